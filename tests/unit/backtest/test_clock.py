"""The virtual clock and where batches end so that timers fire before the first record past them."""

from __future__ import annotations

import pytest

from app.backtest.clock import BEGINNING_MS, EngineClock, PositionClock, next_chunk


def test_position_clock__only_moves_forward() -> None:
    clock = PositionClock()
    assert clock.now_ms == BEGINNING_MS
    assert clock.advance(100) == 100
    assert clock.advance(50) == 100
    assert clock.advance(150) == 150


def test_engine_clock__reads_the_stream_it_points_at() -> None:
    a, b = PositionClock(10), PositionClock(20)
    clock = EngineClock(a)
    assert clock() == 10
    clock.current = b
    b.advance(30)
    assert clock() == 30


@pytest.mark.parametrize(("keys", "limits", "start", "clock_ms", "due_ms", "end"), [
    ([1, 2, 3], None, 0, 0, None, 3),                      # no timers: everything
    ([1, 2, 3], None, 0, 0, 3, 2),                         # stops before the record that reaches the timer
    ([1, 2, 3], None, 0, 0, 1, 0),                         # the first record must wait: fire first
    ([1, 2, 3], None, 1, 0, None, 3),                      # from `start`
    ([5, 2, 3], None, 0, 0, 4, 0),                         # a late record after a record past the timer
    ([1, 5, 2], None, 0, 0, 4, 1),                         # the position (max so far) decides, not the record
    ([1, 2, 3], None, 0, 5, 6, 3),                         # the clock is already past the keys: late records run
    ([1, 2, 3], None, 0, 7, 6, 0),                         # ...unless the clock itself reached the timer
    ([1, 2, 3, 4], [2, None, None, None], 0, 0, None, 1),  # the first record arms a timer at 2: stop before 2
    ([1, 2, 3, 4], [10, 3, None, None], 0, 0, None, 2),    # the earliest armed timer bounds the rest
    ([1, 2, 3, 4], [None, None, 9, None], 0, 0, 3, 2),     # an earlier timer already armed wins
])
def test_next_chunk(keys: list[int], limits: list[int | None] | None, start: int, clock_ms: int, due_ms: int | None,
                    end: int) -> None:
    assert next_chunk(keys, limits, start, clock_ms, due_ms) == end


def test_partition_buffer__takes_records_up_to_the_first_at_or_past_the_end() -> None:
    from app.backtest.replayer import PartitionBuffer
    from app.runtime.engine import InRecord

    buffer = PartitionBuffer()
    keys = [1, 5, 3, 12, 8, 20, 25]
    buffer.add([InRecord(None, {}, i, k) for i, k in enumerate(keys)], keys)
    assert (buffer.first_key, buffer.ready_for(25), buffer.ready_for(26)) == (1, True, False)
    records, taken = buffer.take_before(10)
    assert ([r.offset for r in records], taken) == ([0, 1, 2], [1, 5, 3])  # 8 waits behind 12
    assert buffer.first_key == 12 and buffer.ready_for(10)
    assert buffer.take_before(21)[1] == [12, 8, 20]
    assert (buffer.first_key, buffer.max_key) == (25, 25)
    assert buffer.take_before(100)[1] == [25] and buffer.first_key is None and not buffer.ready_for(0)
    buffer.finished = True
    assert buffer.ready_for(10**9)


def test_next_live_due__skips_moved_and_cancelled_timers() -> None:
    from app.runtime.backends import MemoryBackend
    from app.runtime.codecs import JsonCodec
    from app.runtime.store import PartitionStore
    from app.runtime.timers import PartitionTimers

    timers = PartitionTimers(PartitionStore(MemoryBackend(), JsonCodec()))
    timers.schedule("a", 10)
    timers.schedule("b", 20)
    timers.schedule("a", 30)  # moved: its entry at 10 is stale
    assert (timers.next_due("wall"), timers.next_live_due("wall")) == (10, 20)
    timers.cancel("b")
    assert timers.next_live_due("wall") == 30
    timers.cancel("a")
    assert timers.next_live_due("wall") is None
