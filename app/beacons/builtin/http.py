"""`http`: check URLs: reachable, expected status code, latency thresholds."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import httpx

from app.beacons.base import Beacon, BeaconContext, describe_error, observing
from app.beacons.builtin._endpoint import ProbeResult, compare_probes
from app.beacons.config import HttpCheck, HttpConfig

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["build", "probe_http"]


def _expected(check: HttpCheck, status: int) -> bool:
    return status in check.expect if check.expect is not None else 200 <= status < 400


def probe_http(client: httpx.Client, check: HttpCheck) -> ProbeResult:
    """One request; the body is not read (only the status line and headers matter)."""
    started = time.perf_counter()
    try:
        with client.stream(check.method, check.url, timeout=check.timeout_ms / 1000) as resp:
            status = resp.status_code
    except httpx.HTTPError as exc:
        return ProbeResult((time.perf_counter() - started) * 1000, error=describe_error(exc))
    return ProbeResult((time.perf_counter() - started) * 1000, status_code=status,
                       bad_status=not _expected(check, status))


def _observe(ctx: BeaconContext, *, client: httpx.Client, checks: Sequence[HttpCheck]) -> dict[str, ProbeResult]:
    return {check.label: probe_http(client, check) for check in checks}


def build(config: HttpConfig, env: BuildEnv) -> list[Beacon]:
    """The http beacon (none when no URL is configured); one client, kept across runs."""
    if not config.checks:
        return []
    checks = list(config.checks)
    # Redirects are answers too (3xx is "up" by default); following them would check another URL.
    client = httpx.Client(follow_redirects=False, headers={"User-Agent": "vigil-beacon"})
    observe = partial(_observe, client=client, checks=checks)
    compare = partial(compare_probes, checks=checks, prefix="http",
                      tags_of=lambda c: {"url": c.url, "check": c.label})
    return [Beacon("http", config.interval_ms, observing(observe, compare), close=client.close,
                   description=__doc__ or "")]
