"""`net`: network interfaces up/down, appeared/removed, addresses changed, and traffic rates."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import psutil

from app.beacons.base import Beacon, BeaconContext, Memo, Reading, observing, report
from app.beacons.config import NetConfig
from app.model.events import Event, Kind, Severity

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["Interface", "NetSample", "build", "compare_net", "observe_net"]

_COUNTERS = ("bytes_sent", "bytes_recv", "errin", "errout", "dropin", "dropout")


@dataclass(frozen=True)
class Interface:
    up: bool
    addresses: frozenset[str]
    counters: tuple[int, ...] | None = None  # in _COUNTERS order


@dataclass(frozen=True)
class NetSample:
    time_ms: int
    interfaces: Mapping[str, Interface]


def _address(addr: Any) -> str | None:  # a psutil snicaddr
    if addr.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    ip = addr.address.split("%", 1)[0]  # drop the IPv6 zone (fe80::1%eth0)
    try:
        prefix = ipaddress.ip_network(f"{ip}/{addr.netmask}", strict=False).prefixlen if addr.netmask else None
    except ValueError:
        prefix = None
    return f"{ip}/{prefix}" if prefix is not None else ip


def observe_net(ctx: BeaconContext, *, only: Sequence[str] | None, ignore: Sequence[str]) -> NetSample:
    """Link state, IP addresses and traffic counters of every watched interface."""
    stats, addrs = psutil.net_if_stats(), psutil.net_if_addrs()
    io = psutil.net_io_counters(pernic=True)
    interfaces = {}
    for name in sorted(set(stats) | set(addrs)):
        if (only is not None and name not in only) or name in ignore:
            continue
        found = (_address(a) for a in addrs.get(name, ()))
        counters = io.get(name)
        interfaces[name] = Interface(
            up=bool(stats[name].isup) if name in stats else False,
            addresses=frozenset(a for a in found if a),
            counters=tuple(getattr(counters, c) for c in _COUNTERS) if counters else None,
        )
    return NetSample(ctx.now_ms, interfaces)


def _rates(before: Interface | None, now: Interface, seconds: float) -> dict[str, float]:
    if before is None or before.counters is None or now.counters is None or seconds <= 0:
        return {}
    delta = dict(zip(_COUNTERS, (b - a for a, b in zip(before.counters, now.counters, strict=True)), strict=True))
    if any(d < 0 for d in delta.values()):  # counters reset (driver reload): skip one sample
        return {}
    return {"bytes_sent_per_s": delta["bytes_sent"] / seconds, "bytes_recv_per_s": delta["bytes_recv"] / seconds,
            "errors_per_s": (delta["errin"] + delta["errout"]) / seconds,
            "drops_per_s": (delta["dropin"] + delta["dropout"]) / seconds}


def compare_net(ctx: BeaconContext, previous: Memo[NetSample] | None, sample: NetSample, *,
                down_severity: int = Severity.WARNING) -> tuple[list[Event], Memo[NetSample]]:
    """Per interface ("net:eth0"): STATUS when it goes up/down, appears, disappears or its addresses
    change; a METRIC sample of traffic rates every run after the first."""
    before = previous.observation.interfaces if previous else {}
    seconds = (sample.time_ms - previous.observation.time_ms) / 1000 if previous else 0.0
    old_readings = previous.readings if previous else {}
    readings = {}
    for name, iface in sample.interfaces.items():
        state = "up" if iface.up else "down"
        addresses = ",".join(sorted(iface.addresses))
        was = old_readings.get(f"net:{name}")
        # Down is an alarm only for an interface that was up: one that has been down since we
        # started (an unused ifb0, a spare port) is how the host is meant to be.
        never_up = was is None or (was.state == "down" and was.severity == Severity.OK)
        severity = Severity.OK if iface.up or never_up else Severity(down_severity)
        text = f"{name} is {state}" + (f" ({addresses})" if addresses else "") + (
            " (not up since the beacon started)" if not iface.up and never_up else "")
        readings[f"net:{name}"] = Reading(state, severity, text, tags={"interface": name, "addresses": addresses},
                                          metrics=_rates(before.get(name), iface, seconds))
    events, reported = report(ctx, previous.readings if previous else None, readings)
    for name, iface in sample.interfaces.items():
        old = before.get(name)
        if old is not None and old.addresses != iface.addresses:
            added, removed = sorted(iface.addresses - old.addresses), sorted(old.addresses - iface.addresses)
            reading = readings[f"net:{name}"]
            text = f"{name} addresses changed:" + (f" added {', '.join(added)}" if added else "") + (
                f" removed {', '.join(removed)}" if removed else "")
            events.append(ctx.event(f"net:{name}", kind=Kind.STATUS, severity=reading.severity, text=text,
                                    tags={**reading.tags, "state": reading.state, "change": "addresses",
                                          "added": ",".join(added), "removed": ",".join(removed)}))
    for name in sorted(set(before) - set(sample.interfaces)):
        events.append(ctx.event(f"net:{name}", kind=Kind.STATUS, severity=Severity(down_severity),
                                text=f"{name} was removed",
                                tags={"interface": name, "state": "removed", "change": "removed"}))
    return events, Memo(sample, reported)


def build(config: NetConfig, env: BuildEnv) -> list[Beacon]:
    """The net beacon."""
    observe = partial(observe_net, only=config.interfaces, ignore=config.ignore)
    compare = partial(compare_net, down_severity=config.down_severity)
    return [Beacon("net", config.interval_ms, observing(observe, compare), description=__doc__ or "")]
