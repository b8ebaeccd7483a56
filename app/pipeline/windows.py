"""Metric windows as the pipeline keeps them: cheap to update per event, exact to turn into a
MetricAggregate (and a vigil.WindowAggregate) when a window closes or is queried. Pure.

A window value is `((metric, Observations), ...)` (sorted by metric) for one identity and one
window. `Observations` is a tuple `(count, sum, min, max, last, last_time_ms, bins)`: `bins` maps a
sketch bin to its count in one dict (positive-value keys as they are, negative-value keys moved up
by NEGATIVE_BIN_BASE, the zero bin at ZERO_BIN). The bin of a value is computed once per event and
reused for every window size, and no DDSketch object exists on the hot path; `to_aggregate` builds
one when needed.

The open windows of an identity are `OpenWindows`: per configured size (in the order of the
sizes), a tuple of `(start_ms, WindowValue)` sorted by start -- usually one, more while an older
window waits out its grace period. `add_to_windows` and `close_due` do tumbling-window arithmetic
on them: a window [start, start + size) closes once the event-time watermark reaches end + grace.

Values in a table must never change once stored (the store's undo journal keeps references to
old values to roll back a failed agent call), so every function here returns new tuples and bins
dicts instead of updating them in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from app.pipeline.aggregate import SKETCH_MIN_MAGNITUDE, MetricAggregate, sketch_key

__all__ = [
    "JSON_OPTIONS",
    "NEGATIVE_BIN_BASE",
    "ZERO_BIN",
    "Binned",
    "Observations",
    "OpenWindows",
    "WindowCodec",
    "WindowValue",
    "add_observations",
    "add_to_windows",
    "bin_metrics",
    "close_due",
    "to_aggregate",
    "window_from_json",
]

#: Sketch keys of either sign stay within about +-36k at 1% accuracy; negative values' keys are
#: stored around this base (base +- 36k), so positive and negative bins share one dict without clashing.
NEGATIVE_BIN_BASE: Final = 1_000_000
_NEGATIVE_FROM: Final = NEGATIVE_BIN_BASE // 2
#: The bin of values within SKETCH_MIN_MAGNITUDE of zero.
ZERO_BIN: Final = 3 * NEGATIVE_BIN_BASE

#: (count, sum, min, max, last, last_time_ms, bins)
Observations = tuple[int, float, float, float, float, int, dict[int, int]]
#: ((metric, Observations), ...) of one identity in one window, sorted by metric
WindowValue = tuple[tuple[str, Observations], ...]
#: (metric, value, bin) of one event's metric, prepared once for every window size
Binned = tuple[str, float, int]
#: per window size: ((start_ms, value), ...) sorted by start
OpenWindows = tuple[tuple[tuple[int, WindowValue], ...], ...]
#: (size_ms, start_ms, value) of a window that closed
ClosedWindow = tuple[int, int, WindowValue]


def value_bin(value: float) -> int:
    """The shared-dict bin of one (finite) value."""
    if value > SKETCH_MIN_MAGNITUDE:
        return sketch_key(value)
    if value < -SKETCH_MIN_MAGNITUDE:
        return NEGATIVE_BIN_BASE + sketch_key(-value)
    return ZERO_BIN


def bin_metrics(metrics: Mapping[str, float]) -> list[Binned]:
    """The metrics of one event with their bins, sorted by metric (finite values: normalize_event
    checked them)."""
    binned = [(metric, value, value_bin(value)) for metric, value in metrics.items()]
    if len(binned) > 1:
        binned.sort()
    return binned


def _observed(obs: Observations | None, value: float, bin_: int, time_ms: int) -> Observations:
    """`obs` with one more value (a new tuple and bins dict)."""
    if obs is None:
        return (1, value, value, value, value, time_ms, {bin_: 1})
    count, total, lo, hi, last, last_time_ms, bins = obs
    bins = bins.copy()
    bins[bin_] = bins.get(bin_, 0) + 1
    if time_ms >= last_time_ms:
        last, last_time_ms = value, time_ms
    return (count + 1, total + value, value if value < lo else lo, value if value > hi else hi, last, last_time_ms,
            bins)


def add_observations(window: WindowValue | None, binned: list[Binned], time_ms: int) -> WindowValue:
    """A new window value with one event's metrics (`bin_metrics`) added; `window` is unchanged.

    Order-independent except for `last`, which keeps the value with the latest event time (ties:
    the one added later), so out-of-order events within grace give the same result."""
    if window is not None and len(window) == 1 and len(binned) == 1:  # one metric, as most identities have
        ((metric, obs),) = window
        name, value, bin_ = binned[0]
        if metric == name:
            return ((metric, _observed(obs, value, bin_, time_ms)),)
    new: dict[str, Observations] = dict(window) if window else {}
    for metric, value, bin_ in binned:
        new[metric] = _observed(new.get(metric), value, bin_, time_ms)
    return tuple(sorted(new.items()))


def add_to_windows(windows: OpenWindows, sizes_ms: tuple[int, ...], binned: list[Binned], time_ms: int, *,
                   grace_ms: int, watermark_ms: int) -> tuple[OpenWindows, int, int | None]:
    """Add one event's metrics to its window of every size.

    Returns (new open windows, how many sizes dropped it as late, the close time of the earliest
    window it opened or None). Late: its window already closed (watermark >= end + grace)."""
    out = []
    late = 0
    opened_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows):  # noqa: B905 (equal lengths; per event, so no strict check)
        start = time_ms - time_ms % size
        close_ms = start + size + grace_ms
        if close_ms <= watermark_ms:
            late += 1
            out.append(open_)
        elif open_ and open_[-1][0] == start:  # the common case: the newest open window
            out.append((*open_[:-1], (start, add_observations(open_[-1][1], binned, time_ms))))
        else:
            entries = dict(open_)
            entries[start] = add_observations(entries.get(start), binned, time_ms)
            out.append(tuple(sorted(entries.items())))
            if len(entries) > len(open_) and (opened_close_ms is None or close_ms < opened_close_ms):
                opened_close_ms = close_ms
    return tuple(out), late, opened_close_ms


def close_due(windows: OpenWindows, sizes_ms: tuple[int, ...], *, grace_ms: int,
              watermark_ms: int) -> tuple[list[ClosedWindow], OpenWindows, int | None]:
    """Split off the windows that closed at `watermark_ms` (end + grace <= watermark).

    Returns (closed windows oldest first per size, the still open ones, the earliest close time
    among those or None)."""
    closed: list[ClosedWindow] = []
    remaining = []
    next_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows, strict=True):
        keep = []
        for start, value in open_:
            close_ms = start + size + grace_ms
            if close_ms <= watermark_ms:
                closed.append((size, start, value))
            else:
                keep.append((start, value))
                if next_close_ms is None or close_ms < next_close_ms:
                    next_close_ms = close_ms
        remaining.append(tuple(keep) if len(keep) != len(open_) else open_)
    return closed, tuple(remaining), next_close_ms


def to_aggregate(obs: Observations) -> MetricAggregate:
    """The MetricAggregate (with its DDSketch) of one metric's observations in a window."""
    count, total, lo, hi, last, last_time_ms, bins = obs
    positive: dict[int, float] = {}
    negative: dict[int, float] = {}
    zero = 0
    for key, n in bins.items():
        if key == ZERO_BIN:
            zero = n
        elif key >= _NEGATIVE_FROM:
            negative[key - NEGATIVE_BIN_BASE] = n
        else:
            positive[key] = n
    return MetricAggregate.from_bins(count=count, sum=total, min=lo, max=hi, last=last, last_time_ms=last_time_ms,
                                     positive=positive, negative=negative, zero_count=zero)


#: orjson writes a window value as it is (tuples as arrays, the bins' int keys as strings).
JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def window_from_json(data: list[list[Any]]) -> WindowValue:
    """A window value from its JSON (`orjson.dumps(value, option=JSON_OPTIONS)`, parsed)."""
    return tuple((metric, (count, total, lo, hi, last, last_time_ms, {int(k): n for k, n in bins.items()}))
                 for metric, (count, total, lo, hi, last, last_time_ms, bins) in data)


class WindowCodec:
    """Table codec for a WindowValue (JSON, encoded by orjson directly)."""

    name = "vigil-window"

    def encode(self, value: WindowValue) -> bytes:
        return orjson.dumps(value, option=JSON_OPTIONS)

    def decode(self, data: bytes) -> WindowValue:
        return window_from_json(orjson.loads(data))
