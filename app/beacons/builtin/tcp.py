"""`tcp`: check ports: does something accept a connection, and how fast."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from app.beacons.base import Beacon, BeaconContext, describe_error, observing
from app.beacons.builtin._endpoint import ProbeResult, compare_probes
from app.beacons.config import TcpCheck, TcpConfig

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["build", "probe_tcp"]


def probe_tcp(host: str, port: int, *, timeout_s: float) -> ProbeResult:
    """Connect and close at once; a refusal or a timeout means down."""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return ProbeResult((time.perf_counter() - started) * 1000, error=describe_error(exc))
    return ProbeResult((time.perf_counter() - started) * 1000)


def _observe(ctx: BeaconContext, *, checks: Sequence[TcpCheck]) -> dict[str, ProbeResult]:
    return {c.label: probe_tcp(c.host, c.port, timeout_s=c.timeout_ms / 1000) for c in checks}


def build(config: TcpConfig, env: BuildEnv) -> list[Beacon]:
    """The tcp beacon (none when no port is configured)."""
    if not config.checks:
        return []
    checks = list(config.checks)
    compare = partial(compare_probes, checks=checks, prefix="tcp",
                      tags_of=lambda c: {"host": c.host, "port": str(c.port), "check": c.label})
    return [Beacon("tcp", config.interval_ms, observing(partial(_observe, checks=checks), compare),
                   description=__doc__ or "")]
