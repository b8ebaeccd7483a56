"""`cpu`: busy % of all CPUs over the interval (from the kernel's cumulative CPU times)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

import psutil

from app.beacons.base import Beacon, BeaconContext, Memo, Reading, Thresholds, graded, observing, report
from app.beacons.config import CpuConfig
from app.model.events import Event

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["build", "compare_cpu", "observe_cpu"]

# On Linux guest time is already counted in user/nice; adding it again would inflate the total.
_COUNTED_ELSEWHERE = frozenset({"guest", "guest_nice"})
_NOT_BUSY = frozenset({"idle", "iowait"})
_SHOWN = ("user", "system", "iowait", "steal")


def observe_cpu(ctx: BeaconContext | None = None) -> dict[str, float]:
    """Cumulative CPU seconds by mode (user, system, idle, iowait, ...), summed over CPUs."""
    return dict(psutil.cpu_times()._asdict())


def compare_cpu(ctx: BeaconContext, previous: Memo[Mapping[str, float]] | None, times: Mapping[str, float], *,
                thresholds: Thresholds) -> tuple[list[Event], Memo[Mapping[str, float]]]:
    """Busy % between the previous observation and this one (nothing on the first run)."""
    if previous is None:
        return [], Memo(times, {})
    delta = {mode: max(0.0, t - previous.observation.get(mode, 0.0)) for mode, t in times.items()}
    total = sum(t for mode, t in delta.items() if mode not in _COUNTED_ELSEWHERE)
    if total <= 0:  # two reads within one clock tick: nothing to say yet
        return [], Memo(previous.observation, previous.readings)
    busy = 100.0 * (total - sum(delta.get(mode, 0.0) for mode in _NOT_BUSY)) / total
    metrics = {"busy_pct": busy, **{f"{mode}_pct": 100.0 * delta[mode] / total for mode in _SHOWN if mode in delta}}
    severity = graded(thresholds, busy, previous.readings, "cpu")
    reading = Reading(severity.name.lower(), severity, f"CPU {busy:.1f}% busy{thresholds.describe(severity, '%')}",
                      metrics=metrics)
    events, readings = report(ctx, previous.readings, {"cpu": reading})
    return events, Memo(times, readings)


def build(config: CpuConfig, env: BuildEnv) -> list[Beacon]:
    """The cpu beacon."""
    compare = partial(compare_cpu, thresholds=config.thresholds.to_thresholds())
    return [Beacon("cpu", config.interval_ms, observing(observe_cpu, compare), description=__doc__ or "")]
