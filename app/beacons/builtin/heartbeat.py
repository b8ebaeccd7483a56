"""`heartbeat`: an event with a ttl every interval, so absence rules and the members view notice
a host that went silent (the ttl says when the next one is due)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from app.beacons.base import Beacon, BeaconContext
from app.beacons.config import HeartbeatConfig
from app.durations import format_duration_ms
from app.model.events import Event, Kind, Severity

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["build", "heartbeat_event"]


def heartbeat_event(ctx: BeaconContext, *, ttl_s: float, uptime_s: float) -> Event:
    """The heartbeat: STATUS OK "heartbeat" with a ttl; the configured tags describe the member."""
    return ctx.event("heartbeat", kind=Kind.STATUS, severity=Severity.OK,
                     text=f"alive, beacons up {format_duration_ms(int(uptime_s) * 1000)}", ttl=ttl_s,
                     metrics={"uptime_s": uptime_s})


def build(config: HeartbeatConfig, env: BuildEnv) -> list[Beacon]:
    """The heartbeat beacon."""

    def check(ctx: BeaconContext, previous: Any) -> tuple[list[Event], None]:
        uptime_s = round(time.monotonic() - env.started_monotonic, 3)
        return [heartbeat_event(ctx, ttl_s=config.ttl_s, uptime_s=uptime_s)], None

    return [Beacon("heartbeat", config.interval_ms, check, description=__doc__ or "")]
