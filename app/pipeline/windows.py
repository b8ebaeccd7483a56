"""Metric windows as the pipeline keeps them: cheap to update per event, exact to turn into a
MetricAggregate (and a vigil.WindowAggregate) when a window closes or is queried. Pure.

A window value is `{metric: Observations}` for one identity and one window. `Observations` is a list
`[count, sum, min, max, last, last_time_ms, bins, pending]`: `bins` maps a sketch bin to its count in
one dict (positive-value keys as they are, negative-value keys moved up by NEGATIVE_BIN_BASE, the
zero bin at ZERO_BIN). An event appends its value to `pending` (and updates `last`); every FOLD_AT
values, pending values are folded into count, sum, min, max and bins at once (their bins in one
expression), which costs a fraction of doing it per event. Folding keeps the order of addition, so the
results are exactly those of adding one value at a time. Readers use `folded(obs)`. No DDSketch
object exists on the hot path: `to_window_record` turns the bins into a vigil.WindowAggregate
directly, `to_aggregate` builds a MetricAggregate (with its DDSketch) when one is needed.

The open windows of an identity are `OpenWindows`: per configured size (in the order of the
sizes), a list of `[start_ms, WindowValue]` sorted by start -- usually one, more while an older
window waits out its grace period. `add_samples` and `close_due` do tumbling-window arithmetic
on them: a window [start, start + size) closes once the event-time watermark reaches end + grace.

Both update in place, because an event costs a few list updates that way instead of new
containers. Values in a table must never change once stored (a commit in progress keeps references
to them, and a failed agent call is undone by dropping its writes), so callers update a private
copy (`copy_windows`) and store that. The copy is copy-on-write: it shares every window value with
the original, and `add_samples` copies a value just before its first update (an event touches
only its own window of each size, and `close_due` removes windows without changing any). An entry
whose value is private to the copy is marked by its type (`_Owned`, serialised as a plain list);
`copy_windows` makes every entry of the new copy unmarked again. A value's copy shares its `bins`
dict: folding replaces the dict instead of changing it.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from mypy_extensions import mypyc_attr

from app.pipeline.aggregate import (
    SKETCH_MIN_MAGNITUDE,
    MetricAggregate,
    SketchBins,
    record_from_bins,
    sketch_key_function,
)

__all__ = [
    "FOLD_AT",
    "JSON_OPTIONS",
    "NEGATIVE_BIN_BASE",
    "ZERO_BIN",
    "Observations",
    "OpenWindows",
    "Sample",
    "WindowCodec",
    "WindowValue",
    "add_samples",
    "add_to_windows",
    "close_due",
    "copy_windows",
    "folded",
    "new_windows",
    "observe",
    "to_aggregate",
    "to_window_record",
    "value_bins",
    "window_from_json",
]

#: Sketch keys of either sign stay within about +-36k at 1% accuracy; negative values' keys are
#: stored around this base (base +- 36k), so positive and negative bins share one dict without clashing.
NEGATIVE_BIN_BASE: Final = 1_000_000
_NEGATIVE_FROM: Final = NEGATIVE_BIN_BASE // 2
#: The bin of values within SKETCH_MIN_MAGNITUDE of zero.
ZERO_BIN: Final = 3 * NEGATIVE_BIN_BASE

#: Pending values of a window's metric are folded into its summary once there are this many.
FOLD_AT: Final = 32

#: [count, sum, min, max, last, last_time_ms, bins, pending]
Observations = list[Any]
#: {metric: Observations} of one identity in one window
WindowValue = dict[str, Observations]
#: per window size: [[start_ms, value], ...] sorted by start
OpenWindows = list[list[list[Any]]]
#: (size_ms, start_ms, value) of a window that closed
ClosedWindow = tuple[int, int, WindowValue]


_KEY_MULTIPLIER, _KEY_OFFSET = sketch_key_function()


def value_bins(values: Sequence[float]) -> list[int]:
    """The shared-dict bin of each (finite) value: `sketch_key` of its magnitude (the same float
    operations, in one expression), moved up by NEGATIVE_BIN_BASE for a negative value, ZERO_BIN
    within SKETCH_MIN_MAGNITUDE of zero."""
    log, ceil, mult, off, least = math.log, math.ceil, _KEY_MULTIPLIER, _KEY_OFFSET, SKETCH_MIN_MAGNITUDE
    return [int(ceil(log(v, 2) * mult) + off) if v > least
            else NEGATIVE_BIN_BASE + int(ceil(log(-v, 2) * mult) + off) if v < -least
            else ZERO_BIN for v in values]


def observe(window: WindowValue, metrics: Mapping[str, float], time_ms: int) -> None:
    """Add one event's metrics (finite values: normalize_event checked them) to a window value, in
    place.

    Order-independent except for `last`, which keeps the value with the latest event time (ties:
    the one added later), so out-of-order events within grace give the same result."""
    for metric, value in metrics.items():
        obs = window.get(metric)
        if obs is None:
            window[metric] = [1, value, value, value, value, time_ms, {value_bins((value,))[0]: 1}, []]
            continue
        pending = obs[7]
        pending.append(value)
        if time_ms >= obs[5]:
            obs[4] = value
            obs[5] = time_ms
        if len(pending) >= FOLD_AT:
            _fold(obs)


def _fold(obs: Observations) -> None:
    """Fold the pending values into count, sum, min, max and bins, in place (obs is private, but its
    bins dict may be shared: it is replaced, not changed). Sequential, as one-at-a-time updates
    would be: the sum adds in order (not `sum()`, which compensates rounding from Python 3.12 on),
    and min/max keep the first of equal values."""
    pending = obs[7]
    obs[0] += len(pending)
    total = obs[1]
    for value in pending:
        total += value
    obs[1] = total
    lo, hi = min(pending), max(pending)
    if lo < obs[2]:
        obs[2] = lo
    if hi > obs[3]:
        obs[3] = hi
    bins = obs[6] = obs[6].copy()
    for key in value_bins(pending):
        bins[key] = bins.get(key, 0) + 1
    obs[7] = []


def folded(obs: Observations) -> Observations:
    """The observations with their pending values folded in: `obs` itself when none are pending,
    else a new list (`obs` is not changed: it may be stored)."""
    if not obs[7]:
        return obs
    out = obs.copy()
    _fold(out)
    return out


def new_windows(sizes_ms: tuple[int, ...]) -> OpenWindows:
    """No open window of any size."""
    return [[] for _ in sizes_ms]


@mypyc_attr(native_class=False)  # mypyc: a list subclass must stay a Python class
class _Owned(list[Any]):
    """An open-window entry [start_ms, value] whose value belongs to this copy of the windows alone
    (add_samples made or copied it), so it may be updated in place. Any other entry's value may be
    shared with a stored state. A plain list to orjson and to ==."""

    __slots__ = ()


def _copy_value(value: WindowValue) -> WindowValue:
    return {metric: [*obs[:7], obs[7].copy()] for metric, obs in value.items()}


def copy_windows(windows: OpenWindows) -> OpenWindows:
    """A private copy to update in place with add_samples and close_due. Copy-on-write: the window
    values stay shared with `windows` (nothing changes them) until add_samples updates one."""
    return [[[start, value] for start, value in open_] for open_ in windows]


def _writable(open_: list[list[Any]], i: int) -> WindowValue:
    """The value of open_[i], ready to update: copied first (and the entry replaced) unless it is
    already private to these windows."""
    entry = open_[i]
    if type(entry) is not _Owned:
        entry = open_[i] = _Owned((entry[0], _copy_value(entry[1])))
    return entry[1]


def _start_of(entry: list[Any]) -> int:
    return entry[0]


#: (time_ms, metrics, watermark_ms) of one event for add_samples: its metrics, and the partition's
#: watermark when it was applied (which decides whether it came too late for a window)
Sample = tuple[int, Mapping[str, float], int]


def add_samples(windows: OpenWindows, sizes_ms: tuple[int, ...], samples: list[Sample], *,
                grace_ms: int) -> tuple[int, int | None]:
    """Add events' metrics (in the order they were applied) to their window of every size, in place:
    one call for all the events of an identity in a batch, one size after the other, which is what
    adding them one at a time does, at a fraction of the cost (windows of different sizes are
    independent).

    Returns (how many (event, size) pairs were dropped as late, the close time of the earliest
    window opened or None). Late: the event's window had closed (watermark >= end + grace)."""
    late = 0
    opened_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows):  # noqa: B905 (equal lengths; per batch and identity)
        size_grace = size + grace_ms
        current_start: int | None = None
        current: WindowValue = {}
        for time_ms, metrics, watermark_ms in samples:
            start = time_ms - time_ms % size
            if start + size_grace <= watermark_ms:
                late += 1
                continue
            if start != current_start:
                current, created = _window_at(open_, start)
                current_start = start
                if created and (opened_close_ms is None or start + size_grace < opened_close_ms):
                    opened_close_ms = start + size_grace
            observe(current, metrics, time_ms)
    return late, opened_close_ms


def _window_at(open_: list[list[Any]], start: int) -> tuple[WindowValue, bool]:
    """(the value of the window starting at `start`, ready to update; whether it was created)."""
    for i in range(len(open_) - 1, -1, -1):  # usually the newest
        if open_[i][0] == start:
            return _writable(open_, i), False
    value: WindowValue = {}
    open_.append(_Owned((start, value)))
    open_.sort(key=_start_of)
    return value, True


def add_to_windows(windows: OpenWindows, sizes_ms: tuple[int, ...], metrics: Mapping[str, float], time_ms: int,
                   *, grace_ms: int, watermark_ms: int) -> tuple[int, int | None]:
    """Add one event's metrics to its window of every size, in place (`add_samples` of one event).

    Returns (how many sizes dropped it as late, the close time of the earliest window it opened or
    None)."""
    return add_samples(windows, sizes_ms, [(time_ms, metrics, watermark_ms)], grace_ms=grace_ms)


def close_due(windows: OpenWindows, sizes_ms: tuple[int, ...], *, grace_ms: int,
              watermark_ms: int) -> tuple[list[ClosedWindow], int | None]:
    """Remove (in place) the windows that closed at `watermark_ms` (end + grace <= watermark). Only
    the lists of `windows` change, never a window value: the closed values may still be shared.

    Returns (the closed windows, oldest first per size, their values `folded`; the earliest close
    time among the windows still open, or None)."""
    closed: list[ClosedWindow] = []
    next_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows, strict=True):
        keep = []
        for entry in open_:
            start = entry[0]
            close_ms = start + size + grace_ms
            if close_ms <= watermark_ms:
                closed.append((size, start, {metric: folded(obs) for metric, obs in entry[1].items()}))
            else:
                keep.append(entry)
                if next_close_ms is None or close_ms < next_close_ms:
                    next_close_ms = close_ms
        if len(keep) != len(open_):
            open_[:] = keep
    return closed, next_close_ms


def _split_bins(bins: dict[int, int]) -> tuple[SketchBins, SketchBins, int]:
    """(positive bins, negative bins, zero count) of a window's bins dict, keys as in a DDSketch."""
    keys = sorted(bins)
    zero = bins.get(ZERO_BIN, 0)
    # sorted: positive-value keys (below _NEGATIVE_FROM), then negative-value keys, then ZERO_BIN
    split = bisect_left(keys, _NEGATIVE_FROM)
    positive = keys[:split]
    negative = keys[split:len(keys) - 1] if zero else keys[split:]
    return ((positive, list(map(bins.__getitem__, positive))),
            ([key - NEGATIVE_BIN_BASE for key in negative], list(map(bins.__getitem__, negative))), zero)


def to_aggregate(obs: Observations) -> MetricAggregate:
    """The MetricAggregate (with its DDSketch) of one metric's observations in a window."""
    count, total, lo, hi, last, last_time_ms, bins, _ = folded(obs)
    positive, negative, zero = _split_bins(bins)
    return MetricAggregate.from_bins(count=count, sum=total, min=lo, max=hi, last=last, last_time_ms=last_time_ms,
                                     positive=dict(zip(*positive, strict=True)),
                                     negative=dict(zip(*negative, strict=True)), zero_count=zero)


def to_window_record(obs: Observations, *, subject: str, name: str, metric: str, window_start_ms: int,
                     size_ms: int) -> dict[str, Any]:
    """The vigil.WindowAggregate record of one metric's observations in a window: the record of
    `to_aggregate(obs).to_window_record(...)`, bit for bit, without building the aggregate (closing
    windows is on the hot path)."""
    count, total, lo, hi, last, _, bins, _ = folded(obs)
    positive, negative, zero = _split_bins(bins)
    return record_from_bins(subject=subject, name=name, metric=metric, window_start_ms=window_start_ms,
                            size_ms=size_ms, count=count, sum=total, min=lo, max=hi, last=last, positive=positive,
                            negative=negative, zero_count=zero)


#: orjson writes a window value as it is (lists as arrays, the bins' int keys as strings).
JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def window_from_json(data: dict[str, list[Any]] | list[list[Any]]) -> WindowValue:
    """A window value from its JSON (`orjson.dumps(value, option=JSON_OPTIONS)`, parsed). Also reads
    the [[metric, observations], ...] and the observations without pending values that earlier
    versions stored."""
    pairs = data.items() if isinstance(data, dict) else data
    return {metric: [count, total, lo, hi, last, last_time_ms, {int(k): n for k, n in bins.items()},
                     pending[0] if pending else []]
            for metric, (count, total, lo, hi, last, last_time_ms, bins, *pending) in pairs}


class WindowCodec:
    """Table codec for a WindowValue (JSON, encoded by orjson directly)."""

    name = "vigil-window"

    def encode(self, value: WindowValue) -> bytes:
        return orjson.dumps(value, option=JSON_OPTIONS)

    def decode(self, data: bytes) -> WindowValue:
        return window_from_json(orjson.loads(data))
