"""`disk`: usage per mount point (space and inodes); thresholds on space used %."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import psutil

from app.beacons.base import (
    Beacon,
    BeaconContext,
    Reading,
    Thresholds,
    Unreadable,
    describe_error,
    graded,
    observing,
    report,
)
from app.beacons.config import DiskConfig
from app.model.events import Event

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["DiskUsage", "build", "compare_disks", "mounts_to_watch", "observe_disks"]

_GIB = 2**30


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int
    used_pct: float
    inodes_total: int
    inodes_free: int


def mounts_to_watch(configured: Sequence[str]) -> list[str]:
    """The configured mount points, with `all` expanded to every physical partition."""
    mounts: list[str] = []
    for mount in configured:
        found = [p.mountpoint for p in psutil.disk_partitions(all=False)] if mount == "all" else [mount]
        mounts.extend(m for m in found if m not in mounts)
    return mounts


def observe_disks(ctx: BeaconContext | None, mounts: Sequence[str]) -> dict[str, DiskUsage | Unreadable]:
    """Usage of each mount point (Unreadable when it is missing or not permitted)."""
    usage: dict[str, DiskUsage | Unreadable] = {}
    for mount in mounts:
        try:
            du, vfs = psutil.disk_usage(mount), os.statvfs(mount)
        except OSError as exc:
            usage[mount] = Unreadable(describe_error(exc))
            continue
        # psutil's percent is like df's: of the space non-root users may use.
        usage[mount] = DiskUsage(du.total, du.free, du.percent, vfs.f_files, vfs.f_ffree)
    return usage


def compare_disks(ctx: BeaconContext, previous: dict[str, Reading] | None,
                  usage: Mapping[str, DiskUsage | Unreadable], *,
                  thresholds: Thresholds) -> tuple[list[Event], dict[str, Reading]]:
    """Per mount ("disk:/"): a METRIC sample every run, a STATUS event when its severity changes."""
    readings: dict[str, Reading] = {}
    unreadable = []
    for mount, du in usage.items():
        name = f"disk:{mount}"
        if isinstance(du, Unreadable):
            ctx.problem(name, du.error)
            unreadable.append(name)
            continue
        severity = graded(thresholds, du.used_pct, previous, name)
        inodes_pct = 100.0 * (du.inodes_total - du.inodes_free) / du.inodes_total if du.inodes_total else 0.0
        text = (f"{mount} {du.used_pct:.1f}% used, {du.free_bytes / _GIB:.1f} GiB free of "
                f"{du.total_bytes / _GIB:.1f} GiB{thresholds.describe(severity, '%')}")
        metrics = {"used_pct": du.used_pct, "free_bytes": float(du.free_bytes), "total_bytes": float(du.total_bytes),
                   "inodes_used_pct": inodes_pct}
        readings[name] = Reading(severity.name.lower(), severity, text, tags={"mount": mount}, metrics=metrics)
    return report(ctx, previous, readings, unreadable=unreadable)


def build(config: DiskConfig, env: BuildEnv) -> list[Beacon]:
    """The disk beacon (mount points resolved once, at start)."""
    mounts = mounts_to_watch(config.mounts)
    observe = partial(observe_disks, mounts=mounts)
    compare = partial(compare_disks, thresholds=config.thresholds.to_thresholds())
    return [Beacon("disk", config.interval_ms, observing(observe, compare), description=__doc__ or "")]
