"""`memory`: memory used % (what is not available to new work) and swap used %."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import psutil

from app.beacons.base import Beacon, BeaconContext, Reading, Thresholds, graded, observing, report
from app.beacons.config import MemoryConfig
from app.model.events import Event

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["MemorySample", "build", "compare_memory", "observe_memory"]

_MIB = 2**20


@dataclass(frozen=True)
class MemorySample:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int


def observe_memory(ctx: BeaconContext | None = None) -> MemorySample:
    """Memory and swap sizes from the kernel."""
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return MemorySample(vm.total, vm.available, swap.total, swap.used)


def compare_memory(ctx: BeaconContext, previous: dict[str, Reading] | None, sample: MemorySample, *,
                   thresholds: Thresholds) -> tuple[list[Event], dict[str, Reading]]:
    """A METRIC sample every run; a STATUS event when the severity of used % changes."""
    used_pct = 100.0 * (sample.total_bytes - sample.available_bytes) / max(sample.total_bytes, 1)
    swap_pct = 100.0 * sample.swap_used_bytes / sample.swap_total_bytes if sample.swap_total_bytes else 0.0
    severity = graded(thresholds, used_pct, previous, "memory")
    text = (f"memory {used_pct:.1f}% used, {sample.available_bytes / _MIB:.0f} MiB available of "
            f"{sample.total_bytes / _MIB:.0f} MiB{thresholds.describe(severity, '%')}")
    metrics = {"used_pct": used_pct, "available_bytes": float(sample.available_bytes),
               "total_bytes": float(sample.total_bytes), "swap_used_pct": swap_pct}
    return report(ctx, previous, {"memory": Reading(severity.name.lower(), severity, text, metrics=metrics)})


def build(config: MemoryConfig, env: BuildEnv) -> list[Beacon]:
    """The memory beacon."""
    compare = partial(compare_memory, thresholds=config.thresholds.to_thresholds())
    return [Beacon("memory", config.interval_ms, observing(observe_memory, compare), description=__doc__ or "")]
