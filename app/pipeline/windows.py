"""Metric windows as the pipeline keeps them: cheap to update per event, exact to turn into a
MetricAggregate (and a vigil.WindowAggregate) when a window closes or is queried. Pure.

A window value is `{metric: Observations}` for one identity and one window. `Observations` is a list
`[count, sum, min, max, last, last_time_ms, bins]`: `bins` maps a sketch bin to its count in one
dict (positive-value keys as they are, negative-value keys moved up by NEGATIVE_BIN_BASE, the zero
bin at ZERO_BIN). The bin of a value is computed once per event and reused for every window size,
and no DDSketch object exists on the hot path: `to_window_record` turns the bins into a
vigil.WindowAggregate directly, `to_aggregate` builds a MetricAggregate (with its DDSketch) when one
is needed.

The open windows of an identity are `OpenWindows`: per configured size (in the order of the
sizes), a list of `[start_ms, WindowValue]` sorted by start -- usually one, more while an older
window waits out its grace period. `add_to_windows` and `close_due` do tumbling-window arithmetic
on them: a window [start, start + size) closes once the event-time watermark reaches end + grace.

Both update in place, because an event costs a few integer and dict updates that way instead of
new containers. Values in a table must never change once stored (the store's undo journal keeps
references to old values to roll back a failed agent call), so callers update a private copy
(`copy_windows`) and store that. The copy is copy-on-write: it shares every window value with the
original, and `add_to_windows` copies a value just before its first update (an event touches only
its own window of each size, and `close_due` removes windows without changing any). An entry whose
value is private to the copy is marked by its type (`_Owned`, serialised as a plain list);
`copy_windows` makes every entry of the new copy unmarked again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Any, Final

import orjson

from app.pipeline.aggregate import SKETCH_MIN_MAGNITUDE, MetricAggregate, SketchBins, record_from_bins, sketch_key

__all__ = [
    "JSON_OPTIONS",
    "NEGATIVE_BIN_BASE",
    "ZERO_BIN",
    "Binned",
    "Observations",
    "OpenWindows",
    "WindowCodec",
    "WindowValue",
    "add_to_windows",
    "bin_metrics",
    "close_due",
    "copy_windows",
    "new_windows",
    "observe",
    "to_aggregate",
    "to_window_record",
    "window_from_json",
]

#: Sketch keys of either sign stay within about +-36k at 1% accuracy; negative values' keys are
#: stored around this base (base +- 36k), so positive and negative bins share one dict without clashing.
NEGATIVE_BIN_BASE: Final = 1_000_000
_NEGATIVE_FROM: Final = NEGATIVE_BIN_BASE // 2
#: The bin of values within SKETCH_MIN_MAGNITUDE of zero.
ZERO_BIN: Final = 3 * NEGATIVE_BIN_BASE

#: [count, sum, min, max, last, last_time_ms, bins]
Observations = list[Any]
#: {metric: Observations} of one identity in one window
WindowValue = dict[str, Observations]
#: (metric, value, bin) of one event's metric, prepared once for every window size
Binned = tuple[str, float, int]
#: per window size: [[start_ms, value], ...] sorted by start
OpenWindows = list[list[list[Any]]]
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
    """The metrics of one event with their bins (finite values: normalize_event checked them)."""
    return [(metric, value, value_bin(value)) for metric, value in metrics.items()]


def observe(window: WindowValue, binned: list[Binned], time_ms: int) -> None:
    """Add one event's metrics (`bin_metrics`) to a window value, in place.

    Order-independent except for `last`, which keeps the value with the latest event time (ties:
    the one added later), so out-of-order events within grace give the same result."""
    for metric, value, bin_ in binned:
        obs = window.get(metric)
        if obs is None:
            window[metric] = [1, value, value, value, value, time_ms, {bin_: 1}]
            continue
        obs[0] += 1
        obs[1] += value
        if value < obs[2]:
            obs[2] = value
        if value > obs[3]:
            obs[3] = value
        if time_ms >= obs[5]:
            obs[4] = value
            obs[5] = time_ms
        bins = obs[6]
        bins[bin_] = bins.get(bin_, 0) + 1


def new_windows(sizes_ms: tuple[int, ...]) -> OpenWindows:
    """No open window of any size."""
    return [[] for _ in sizes_ms]


class _Owned(list[Any]):
    """An open-window entry [start_ms, value] whose value belongs to this copy of the windows alone
    (add_to_windows made or copied it), so it may be updated in place. Any other entry's value may be
    shared with a stored state. A plain list to orjson and to ==."""

    __slots__ = ()


def _copy_value(value: WindowValue) -> WindowValue:
    return {metric: [*obs[:6], obs[6].copy()] for metric, obs in value.items()}


def copy_windows(windows: OpenWindows) -> OpenWindows:
    """A private copy to update in place with add_to_windows and close_due. Copy-on-write: the window
    values stay shared with `windows` (nothing changes them) until add_to_windows updates one."""
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


def add_to_windows(windows: OpenWindows, sizes_ms: tuple[int, ...], binned: list[Binned], time_ms: int, *,
                   grace_ms: int, watermark_ms: int) -> tuple[int, int | None]:
    """Add one event's metrics to its window of every size, in place.

    Returns (how many sizes dropped it as late, the close time of the earliest window it opened or
    None). Late: its window already closed (watermark >= end + grace)."""
    late = 0
    opened_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows):  # noqa: B905 (equal lengths; per event, so no strict check)
        start = time_ms - time_ms % size
        close_ms = start + size + grace_ms
        if close_ms <= watermark_ms:
            late += 1
            continue
        if open_ and open_[-1][0] == start:  # the common case: the newest open window
            newest = open_[-1]
            # after its first event in a batch the window is private: no call per event and size to learn that
            observe(newest[1] if type(newest) is _Owned else _writable(open_, -1), binned, time_ms)
            continue
        for i, entry in enumerate(open_):
            if entry[0] == start:
                observe(_writable(open_, i), binned, time_ms)
                break
        else:
            value: WindowValue = {}
            observe(value, binned, time_ms)
            open_.append(_Owned((start, value)))
            open_.sort(key=_start_of)
            if opened_close_ms is None or close_ms < opened_close_ms:
                opened_close_ms = close_ms
    return late, opened_close_ms


def close_due(windows: OpenWindows, sizes_ms: tuple[int, ...], *, grace_ms: int,
              watermark_ms: int) -> tuple[list[ClosedWindow], int | None]:
    """Remove (in place) the windows that closed at `watermark_ms` (end + grace <= watermark). Only
    the lists of `windows` change, never a window value: the closed values may still be shared.

    Returns (the closed windows, oldest first per size; the earliest close time among the windows
    still open, or None)."""
    closed: list[ClosedWindow] = []
    next_close_ms: int | None = None
    for size, open_ in zip(sizes_ms, windows, strict=True):
        keep = []
        for entry in open_:
            start = entry[0]
            close_ms = start + size + grace_ms
            if close_ms <= watermark_ms:
                closed.append((size, start, entry[1]))
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
    count, total, lo, hi, last, last_time_ms, bins = obs
    positive, negative, zero = _split_bins(bins)
    return MetricAggregate.from_bins(count=count, sum=total, min=lo, max=hi, last=last, last_time_ms=last_time_ms,
                                     positive=dict(zip(*positive, strict=True)),
                                     negative=dict(zip(*negative, strict=True)), zero_count=zero)


def to_window_record(obs: Observations, *, subject: str, name: str, metric: str, window_start_ms: int,
                     size_ms: int) -> dict[str, Any]:
    """The vigil.WindowAggregate record of one metric's observations in a window: the record of
    `to_aggregate(obs).to_window_record(...)`, bit for bit, without building the aggregate (closing
    windows is on the hot path)."""
    count, total, lo, hi, last, _, bins = obs
    positive, negative, zero = _split_bins(bins)
    return record_from_bins(subject=subject, name=name, metric=metric, window_start_ms=window_start_ms,
                            size_ms=size_ms, count=count, sum=total, min=lo, max=hi, last=last, positive=positive,
                            negative=negative, zero_count=zero)


#: orjson writes a window value as it is (lists as arrays, the bins' int keys as strings).
JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def window_from_json(data: dict[str, list[Any]] | list[list[Any]]) -> WindowValue:
    """A window value from its JSON (`orjson.dumps(value, option=JSON_OPTIONS)`, parsed). Also reads
    the [[metric, observations], ...] that earlier versions stored."""
    pairs = data.items() if isinstance(data, dict) else data
    return {metric: [count, total, lo, hi, last, last_time_ms, {int(k): n for k, n in bins.items()}]
            for metric, (count, total, lo, hi, last, last_time_ms, bins) in pairs}


class WindowCodec:
    """Table codec for a WindowValue (JSON, encoded by orjson directly)."""

    name = "vigil-window"

    def encode(self, value: WindowValue) -> bytes:
        return orjson.dumps(value, option=JSON_OPTIONS)

    def decode(self, data: bytes) -> WindowValue:
        return window_from_json(orjson.loads(data))
