"""Per-key timers of one agent partition, persisted in the agent's meta table (so they have a
changelog and survive restarts and rebalances) and indexed in memory by due time.

Event-time timers fire when the partition's watermark (max event time seen) reaches them;
wall-clock timers fire when the wall clock does, even when no events flow.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.runtime.store import MISSING, PartitionStore

__all__ = ["TIMER_PREFIX", "WATERMARK_KEY", "DueTimer", "PartitionTimers"]

TIMER_PREFIX = "t:"
WATERMARK_KEY = "wm"
_KINDS = ("event", "wall")


@dataclass(frozen=True)
class DueTimer:
    key: str
    at_ms: int
    kind: str
    payload: Any


class PartitionTimers:
    """Implements app.runtime.types.TimerService for one partition."""

    def __init__(self, meta: PartitionStore, on_event_due: Callable[[int], None] | None = None) -> None:
        self.meta = meta
        #: told when an event-time timer is scheduled, so the engine can check it on the hot path cheaply
        self.on_event_due = on_event_due
        self._heaps: dict[str, list[tuple[int, str]]] = {"event": [], "wall": []}
        #: key -> (at_ms, kind) of every live timer: validates heap entries without store reads
        self._live: dict[str, tuple[int, str]] = {}
        for stored_key, (at_ms, kind, _payload) in meta.items(TIMER_PREFIX):
            key = stored_key[len(TIMER_PREFIX):]
            self._live[key] = (at_ms, kind)
            heapq.heappush(self._heaps[kind], (at_ms, key))

    def schedule(self, key: str, at_ms: int, *, kind: str = "wall", payload: Any = None) -> None:
        """Schedule (or move) the timer of `key`; payload must be JSON-serialisable."""
        if kind not in _KINDS:
            raise ValueError(f"timer kind {kind!r}: use 'event' or 'wall'")
        at_ms = int(at_ms)
        self.meta[TIMER_PREFIX + key] = [at_ms, kind, payload]
        self._live[key] = (at_ms, kind)
        heap = self._heaps[kind]
        heapq.heappush(heap, (at_ms, key))
        if len(heap) > 2 * len(self._live) + 1024:
            # Rescheduling leaves the old entry behind; rebuild before stale entries pile up.
            self._heaps[kind] = heap = [(at, k) for k, (at, kd) in self._live.items() if kd == kind]
            heapq.heapify(heap)
        if kind == "event" and self.on_event_due is not None:
            self.on_event_due(at_ms)

    def cancel(self, key: str) -> None:
        self._live.pop(key, None)
        self.meta.pop(TIMER_PREFIX + key)

    def get(self, key: str) -> DueTimer | None:
        entry = self.meta.get(TIMER_PREFIX + key, MISSING)
        if entry is MISSING:
            return None
        at_ms, kind, payload = entry
        return DueTimer(key, at_ms, kind, payload)

    def next_due(self, kind: str) -> int | None:
        heap = self._heaps[kind]
        return heap[0][0] if heap else None

    def next_live_due(self, kind: str) -> int | None:
        """Like `next_due`, exactly: the due time of the earliest timer still armed (entries of
        timers moved or cancelled since are dropped from the top of the index first)."""
        heap = self._heaps[kind]
        live = self._live
        while heap:
            at_ms, key = heap[0]
            if live.get(key) == (at_ms, kind):
                return at_ms
            heapq.heappop(heap)
        return None

    def pop_due(self, kind: str, now_ms: int) -> list[DueTimer]:
        """Remove and return timers of `kind` due at or before now_ms (stale heap entries skipped)."""
        heap = self._heaps[kind]
        due: list[DueTimer] = []
        while heap and heap[0][0] <= now_ms:
            at_ms, key = heapq.heappop(heap)
            if self._live.get(key) != (at_ms, kind):
                continue  # cancelled or moved since this heap entry was pushed
            entry = self.meta.get(TIMER_PREFIX + key, MISSING)
            del self._live[key]
            del self.meta[TIMER_PREFIX + key]
            due.append(DueTimer(key, at_ms, kind, None if entry is MISSING else entry[2]))
        return due

    @property
    def watermark_ms(self) -> int:
        return int(self.meta.get(WATERMARK_KEY, -1))

    def set_watermark(self, watermark_ms: int) -> None:
        self.meta[WATERMARK_KEY] = watermark_ms
