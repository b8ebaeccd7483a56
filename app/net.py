"""Small network-address helpers shared by the bridges' listen addresses and the executor's allowlist."""

from __future__ import annotations

__all__ = ["url_of"]


def url_of(scheme: str, host: str, port: int) -> str:
    """`scheme://host:port`, an IPv6 address in brackets (`tcp://[::1]:6514`)."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"
