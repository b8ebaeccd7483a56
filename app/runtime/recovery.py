"""Restore decisions (pure): given a store's local checkpoint and the changelog partition's
offsets, what must be read — only what is missing locally — and whether the changelog is damaged.

A changelog's low watermark is 0 unless records were deleted from its start (retention set on it,
DeleteRecords, a topic emptied by hand): compaction keeps offsets. So:
- local state older than the changelog's start (records the store never saw are gone): keep the
  local state, restore what remains on top of it, and report the gap (damaged);
- no local state but a changelog that no longer starts at 0: restore what remains (damaged);
- a local checkpoint at or beyond the changelog's end: the changelog was recreated under the
  store; its content is newer than the local copy, which is emptied and rebuilt from it (damaged).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestorePlan", "plan_restore", "restore_done"]


@dataclass(frozen=True)
class RestorePlan:
    start_offset: int | None  # None: nothing to read
    wipe_local: bool
    reason: str
    #: the changelog lost records the table needed: report it loudly
    damaged: bool = False


def plan_restore(checkpoint: int | None, low: int, high: int) -> RestorePlan:
    """checkpoint: last changelog offset reflected locally (None: empty store);
    low/high: the changelog partition's watermarks."""
    if checkpoint is None:
        if high <= low:
            if low > 0:
                return RestorePlan(None, False, f"changelog emptied (its records before {low} were deleted): the "
                                                f"table starts empty", damaged=True)
            return RestorePlan(None, False, "changelog empty, nothing local")
        if low > 0:
            return RestorePlan(low, False, f"changelog starts at {low} (records before it were deleted): restoring "
                                           f"the {high - low} that remain", damaged=True)
        return RestorePlan(low, False, f"no local state: read {high - low} offsets")
    if checkpoint >= high:
        return RestorePlan(low if high > low else None, True,
                           f"local checkpoint {checkpoint} is beyond the changelog end {high}: the changelog was "
                           f"recreated; rebuilding the table from it", damaged=True)
    if checkpoint + 1 < low:
        return RestorePlan(low if high > low else None, False,
                           f"changelog starts at {low} but the local state ends at {checkpoint}: offsets "
                           f"{checkpoint + 1}..{low - 1} are gone (retention or deleted records); keeping the local "
                           f"state and restoring the {max(0, high - low)} that remain", damaged=True)
    if checkpoint + 1 >= high:
        return RestorePlan(None, False, "local state is up to date")
    return RestorePlan(checkpoint + 1, False, f"read {high - checkpoint - 1} offsets missing locally")


def restore_done(position: int | None, high: int, *, eof: bool) -> bool:
    """A partition is restored once the consumer reached the end seen at start (or hit EOF)."""
    return eof or (position is not None and position >= high)
