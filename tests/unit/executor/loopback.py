"""What executor tests may reach: loopback addresses only, and names resolved without DNS."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

from app.executor.allowlist import IPAddress
from app.executor.egress import Resolver

__all__ = ["LOOPBACK_ONLY", "table_resolver"]

#: What executor tests allow by default: the loopback address their servers listen on, any port.
LOOPBACK_ONLY = {"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http", "smtp"], "ports": ["*"]}]}


def table_resolver(names: Mapping[str, list[str]]) -> Resolver:
    """A resolver answering from `names` only (never DNS): unknown names fail like NXDOMAIN.
    Every address must be loopback, so no test can ever be pointed elsewhere."""
    table = {name: [ipaddress.ip_address(a) for a in addresses] for name, addresses in names.items()}
    if not all(a.is_loopback for addresses in table.values() for a in addresses):
        raise ValueError("test resolvers answer loopback addresses only")

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not in the test resolver")
        return list(table[host])

    return resolve
