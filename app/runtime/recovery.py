"""Restore decisions (pure): given a store's local checkpoint and the changelog partition's
offsets, what must be read — only what is missing locally, or everything after a wipe when the
local copy cannot be trusted (changelog recreated or truncated past the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestorePlan", "plan_restore", "restore_done"]


@dataclass(frozen=True)
class RestorePlan:
    start_offset: int | None  # None: nothing to read
    wipe_local: bool
    reason: str


def plan_restore(checkpoint: int | None, low: int, high: int) -> RestorePlan:
    """checkpoint: last changelog offset reflected locally (None: empty store);
    low/high: the changelog partition's watermarks."""
    if checkpoint is None:
        if high <= low:
            return RestorePlan(None, False, "changelog empty, nothing local")
        return RestorePlan(low, False, f"no local state: read {high - low} offsets")
    if checkpoint >= high:
        return RestorePlan(low if high > low else None, True,
                           f"local checkpoint {checkpoint} is beyond the changelog end {high}: "
                           f"changelog was recreated, rebuilding")
    if checkpoint + 1 < low:
        return RestorePlan(low, True, f"changelog starts at {low}, after local checkpoint {checkpoint}: rebuilding")
    if checkpoint + 1 >= high:
        return RestorePlan(None, False, "local state is up to date")
    return RestorePlan(checkpoint + 1, False, f"read {high - checkpoint - 1} offsets missing locally")


def restore_done(position: int | None, high: int, *, eof: bool) -> bool:
    """A partition is restored once the consumer reached the end seen at start (or hit EOF)."""
    return eof or (position is not None and position >= high)
