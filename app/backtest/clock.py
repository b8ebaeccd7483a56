"""The virtual clock of a backtest, and where its record batches must end so timers fire on time.

A live worker's wall clock runs on its own; a backtest has only the records. Here the "wall clock"
of each stream (an `events` partition, the evaluate partition of a rule set) is its position in
event time: the latest event time it has seen, or the due time of the timer it is firing. So an
absence timer (a ttl's expiry, a rule's `absent_for`) fires at the event time it is due, before the
first record at or past that time -- as live, where the wall clock reaches the deadline while the
events of that moment arrive.

The engine runs records in batches and arms timers while it does, so a batch must end before any
record that a timer would have to precede: `next_chunk` takes records while the position stays
before the earliest timer already armed (`due_ms`) and before the earliest timer each taken record
may arm (its `limit`: e.g. its time plus its ttl). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BEGINNING_MS", "EngineClock", "PositionClock", "next_chunk"]

#: Where a stream's position starts: before any event time (a clock starting at the range's start
#: would be wrong for events whose times lag their Kafka timestamps, e.g. recorded or backfilled ones).
BEGINNING_MS = -(1 << 62)


class PositionClock:
    """The event-time position of one stream: only moves forward."""

    __slots__ = ("now_ms",)

    def __init__(self, start_ms: int = BEGINNING_MS) -> None:
        self.now_ms = start_ms

    def advance(self, to_ms: int) -> int:
        """Move to `to_ms` unless already past it; returns the position."""
        if to_ms > self.now_ms:
            self.now_ms = to_ms
        return self.now_ms


class EngineClock:
    """An Engine's `clock=`: the position of the stream being run (the driver points it at one
    before each engine call, so agents' ctx.now_ms() reads that stream's time)."""

    __slots__ = ("current",)

    def __init__(self, current: PositionClock) -> None:
        self.current = current

    def __call__(self) -> int:
        return self.current.now_ms


def next_chunk(keys: Sequence[int], limits: Sequence[int | None] | None, start: int, clock_ms: int,
               due_ms: int | None) -> int:
    """The end (exclusive) of the batch of records from `start` that may run before a timer fires.

    keys: each record's event time (the position moves to the largest seen); limits: the earliest
    time of a timer each record may arm, None when it arms none (limits None: no record arms any);
    clock_ms: the position before `start`; due_ms: the earliest timer armed already (None: none).
    A record is taken while the position after it stays before every such timer, so `start` is
    returned when the first record must wait for a timer (fire the timers due first)."""
    bound = due_ms
    position = clock_ms
    end = start
    count = len(keys)
    while end < count:
        key = keys[end]
        if key > position:
            position = key
        if bound is not None and position >= bound:
            break
        if limits is not None:
            limit = limits[end]
            if limit is not None and (bound is None or limit < bound):
                bound = limit
        end += 1
    return end
