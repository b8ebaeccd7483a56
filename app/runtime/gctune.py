"""Garbage-collector settings for processes that run records through agents (a worker's loop, a
backtest). They keep many long-lived objects (caches, indexes, state) and allocate many short-lived
ones per record: with CPython's default thresholds, full collections run every few thousand
records, walk everything and free nothing (measured: 30-45% of a worker's time, about a third of a
backtest's). Start-up objects are frozen out of collection and full collections made ~100x rarer.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["STREAM_THRESHOLDS", "collect_young", "gc_paused", "tune_for_streams"]

#: (generation 0, 1, 2) thresholds for stream processing.
STREAM_THRESHOLDS = (700, 10, 1000)


def tune_for_streams(thresholds: tuple[int, int, int] = STREAM_THRESHOLDS) -> Callable[[], None]:
    """Freeze what exists now and set `thresholds` (STREAM_THRESHOLDS unless measuring others);
    returns a function that undoes both (for code that runs inside a process it does not own, e.g.
    a library call)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block (one that was off stays off): for loops that make many
    short-lived objects without cycles, which reference counting frees anyway and collections
    would only walk (a cold restore's changelog records: ~5% of the restoring thread)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_young() -> None:
    """Collect generations 0 and 1 (survivors move to the oldest). For loops that run inside
    `gc_paused()` and collect every so many records themselves: a collection walks what was made
    since the last one and is still alive, so the rarer they are, the fewer short-lived states
    (replaced many times over in between) it walks."""
    gc.collect(1)
