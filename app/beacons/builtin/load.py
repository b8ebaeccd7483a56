"""`load`: the 1/5/15-minute load average; severity from the 5-minute load per CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import psutil

from app.beacons.base import Beacon, BeaconContext, Reading, Thresholds, graded, observing, report
from app.beacons.config import LoadConfig
from app.model.events import Event

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["LoadSample", "build", "compare_load", "observe_load"]


@dataclass(frozen=True)
class LoadSample:
    load1: float
    load5: float
    load15: float
    cpus: int


def observe_load(ctx: BeaconContext | None = None) -> LoadSample:
    """The load averages and the CPU count they are relative to."""
    load1, load5, load15 = os.getloadavg()
    return LoadSample(load1, load5, load15, psutil.cpu_count() or 1)


def compare_load(ctx: BeaconContext, previous: dict[str, Reading] | None, sample: LoadSample, *,
                 thresholds: Thresholds) -> tuple[list[Event], dict[str, Reading]]:
    """A METRIC sample every run; a STATUS event when the severity of load5 per CPU changes."""
    per_cpu = sample.load5 / max(sample.cpus, 1)
    severity = graded(thresholds, per_cpu, previous, "load")
    text = (f"load {sample.load1:.2f} {sample.load5:.2f} {sample.load15:.2f} on {sample.cpus} CPUs: "
            f"{per_cpu:.2f} per CPU over 5 min{thresholds.describe(severity)}")
    metrics = {"load1": sample.load1, "load5": sample.load5, "load15": sample.load15,
               "load5_per_cpu": per_cpu, "cpus": float(sample.cpus)}
    return report(ctx, previous, {"load": Reading(severity.name.lower(), severity, text, metrics=metrics)})


def build(config: LoadConfig, env: BuildEnv) -> list[Beacon]:
    """The load beacon."""
    compare = partial(compare_load, thresholds=config.thresholds.to_thresholds())
    return [Beacon("load", config.interval_ms, observing(observe_load, compare), description=__doc__ or "")]
