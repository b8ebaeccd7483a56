"""The live stream's memory (pure): the last N changes (status transitions, alerts, actions and their
results, silences), each with a monotonic sequence number, so a browser that reconnects with
`Last-Event-ID` is sent exactly what it missed.

An event id is `EPOCH-SEQ`: EPOCH names this server process (a restarted server starts a new
one), SEQ counts from 1. A client is told to start over (a `reset`: refetch what it shows) when its
id is from another epoch, or older than the oldest change still held: a gap it cannot fill.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["GAP", "LiveItem", "LiveRing", "parse_event_id"]

#: What `LiveRing.after` answers when the changes a client missed are no longer held.
GAP: Final = None


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One change: its sequence number, kind (status, alert, action, result, suppressed, silence,
    reset) and JSON-ready data."""

    seq: int
    kind: str
    data: Any


def parse_event_id(text: str | None) -> tuple[str, int] | None:
    """(epoch, seq) of a `Last-Event-ID`, None when absent or not of this form."""
    if not text:
        return None
    epoch, sep, seq = text.strip().rpartition("-")
    if not sep or not epoch or not seq.isdigit():
        return None
    return epoch, int(seq)


class LiveRing:
    """The last `capacity` changes. One writer (the server's event loop); readers take snapshots."""

    def __init__(self, capacity: int = 20_000, *, epoch: str | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.epoch = epoch or format(time.time_ns() // 1_000_000, "x")
        self._items: deque[LiveItem] = deque(maxlen=capacity)
        self.seq = 0

    def append(self, kind: str, data: Any) -> LiveItem:
        """Record a change; returns it with its sequence number."""
        self.seq += 1
        item = LiveItem(self.seq, kind, data)
        self._items.append(item)
        return item

    def event_id(self, seq: int | None = None) -> str:
        """The `EPOCH-SEQ` id of a sequence number (default: the latest)."""
        return f"{self.epoch}-{self.seq if seq is None else seq}"

    @property
    def oldest(self) -> int:
        """The sequence number of the oldest change held (seq + 1 when empty)."""
        return self._items[0].seq if self._items else self.seq + 1

    def after(self, last_seq: int, *, limit: int = 5000) -> list[LiveItem] | None:
        """The changes after `last_seq` (at most `limit`, oldest first), or GAP when some of them are
        no longer held (or `last_seq` is ahead of this ring: a stale id)."""
        if last_seq > self.seq:
            return GAP
        if last_seq == self.seq:
            return []
        if last_seq + 1 < self.oldest:
            return GAP
        start = len(self._items) - (self.seq - last_seq)
        return [self._items[i] for i in range(start, min(len(self._items), start + limit))]

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The sequence number to continue after for a client's `Last-Event-ID`: the current one for
        a new client (no id), None when the id cannot be resumed here (another epoch, or garbage)."""
        if last_event_id is None or last_event_id == "":
            return self.seq
        parsed = parse_event_id(last_event_id)
        if parsed is None or parsed[0] != self.epoch:
            return None
        return parsed[1]
