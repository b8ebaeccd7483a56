"""`service`: the systemd unit state where systemd runs (`systemctl is-active`), else whether
the service's process runs (found like the `process` beacon)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from app.beacons.base import Beacon, BeaconContext, Reading, Unreadable, describe_error, observing, report
from app.beacons.builtin.process import find_processes, process_reading
from app.beacons.config import ServiceConfig, ServiceSpec
from app.model.events import Event, Severity

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["UNIT_SEVERITY", "UnitState", "build", "compare_services", "observe_services", "unit_state"]

SYSTEMCTL_TIMEOUT_S = 5.0

#: `systemctl is-active` answers → severity; anything else (unknown, a typo'd unit) is UNKNOWN.
UNIT_SEVERITY = {
    "active": Severity.OK,
    "reloading": Severity.WARNING,
    "activating": Severity.WARNING,
    "deactivating": Severity.WARNING,
    "inactive": Severity.CRITICAL,
    "failed": Severity.CRITICAL,
}


@dataclass(frozen=True)
class UnitState:
    unit: str
    state: str


def unit_state(systemctl: str, unit: str, *, timeout_s: float = SYSTEMCTL_TIMEOUT_S) -> str:
    """The state word `systemctl is-active UNIT` prints (argv list, no shell, bounded time)."""
    # is-active exits non-zero for every state but "active": the word on stdout is the answer.
    done = subprocess.run([systemctl, "is-active", "--", unit], capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    words = done.stdout.split()
    if not words:
        raise RuntimeError(f"systemctl is-active {unit} said nothing (exit {done.returncode}): "
                           f"{done.stderr.strip()[:200]}")
    return words[0]


def observe_services(ctx: BeaconContext | None, specs: Sequence[ServiceSpec],
                     systemctl: str | None) -> dict[str, UnitState | tuple[int, ...] | Unreadable]:
    """Unit state per service (with systemd), else the pids of its process."""
    if systemctl is None:
        return dict(find_processes(specs))
    observed: dict[str, UnitState | tuple[int, ...] | Unreadable] = {}
    for spec in specs:
        try:
            observed[spec.name] = UnitState(spec.unit_name, unit_state(systemctl, spec.unit_name))
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            observed[spec.name] = Unreadable(describe_error(exc))
    return observed


def compare_services(ctx: BeaconContext, previous: dict[str, Reading] | None,
                     observed: Mapping[str, UnitState | tuple[int, ...] | Unreadable], *,
                     specs: Sequence[ServiceSpec]) -> tuple[list[Event], dict[str, Reading]]:
    """Per service ("service:nginx"): STATUS when its state changes; a METRIC sample when the
    state comes from its process (the process count)."""
    readings, unreadable = {}, []
    for spec in specs:
        name, seen = f"service:{spec.name}", observed[spec.name]
        if isinstance(seen, Unreadable):
            ctx.problem(name, seen.error)
            unreadable.append(name)
        elif isinstance(seen, UnitState):
            severity = UNIT_SEVERITY.get(seen.state, Severity.UNKNOWN)
            readings[name] = Reading(seen.state, severity, f"{seen.unit} is {seen.state}",
                                     tags={"service": spec.name, "unit": seen.unit, "source": "systemd"})
        else:
            reading = process_reading(spec, seen, kind="service")
            readings[name] = Reading(reading.state, reading.severity, reading.text,
                                     tags={**reading.tags, "source": "process"}, metrics=reading.metrics)
    return report(ctx, previous, readings, unreadable=unreadable)


def build(config: ServiceConfig, env: BuildEnv) -> list[Beacon]:
    """The service beacon (none when no service is configured)."""
    if not config.services:
        return []
    specs = list(config.services)
    observe = partial(observe_services, specs=specs, systemctl=env.systemctl)
    compare = partial(compare_services, specs=specs)
    return [Beacon("service", config.interval_ms, observing(observe, compare), description=__doc__ or "")]
