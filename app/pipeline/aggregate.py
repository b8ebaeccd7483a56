"""Metric aggregates of one window: count, sum, min, max, mean, last, and quantiles from DDSketch.

Quantiles come from ddsketch's DDSketch (relative accuracy 1%: a reported p95 of 100 means the true
p95 lies within 99..101). Sketches with the same accuracy merge exactly, so 10-second windows can
be rolled up into longer views without keeping raw values. The accuracy is a constant, not a
setting: changing it would make stored sketches unmergeable with new ones.

Two serialisations:
- `to_dict()`/`from_dict()`: JSON-compatible state for a runtime table (the sketch's bin counts,
  restored without re-adding values);
- the `sketch` bytes of a vigil.WindowAggregate record: ddsketch's protobuf format (the one
  DataDog's Go/Java/JS sketches read).
Both keep only the occupied bins, as a dense run or as (key, count) pairs, whichever is smaller.

`record_from_bins` builds a vigil.WindowAggregate straight from bin counts kept elsewhere (the
windows stage), without a DDSketch object: closing a window is on the hot path. It computes the
quantiles with DDSketch's own rank rule over the same bins and the library's mapping, so they equal
`MetricAggregate.quantile` bit for bit (the tests check it).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ddsketch import LogarithmicMapping
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.proto import KeyMappingProto
from ddsketch.pb.proto import pb as ddsketch_pb
from ddsketch.store import DenseStore
from google.protobuf.message import DecodeError

from app.pipeline.validate import format_time_ms

__all__ = ["RELATIVE_ACCURACY", "SKETCH_MIN_MAGNITUDE", "WINDOW_QUANTILES", "MetricAggregate", "SketchBins",
           "record_from_bins", "sketch_key"]

#: Relative accuracy of every sketch (DDSketch "alpha"); all Vigil sketches share it to stay mergeable.
RELATIVE_ACCURACY: Final = 0.01
#: Quantiles published in each vigil.WindowAggregate (field name -> quantile).
WINDOW_QUANTILES: Final = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

# The mapping holds only constants derived from the accuracy, so all sketches share one.
_MAPPING: Final = LogarithmicMapping(RELATIVE_ACCURACY)
#: Keys of every representable magnitude fit in this span (~71k at 1%); a sketch read from outside
#: that claims more is corrupt, and densifying it could exhaust memory.
_MAX_KEY_SPAN: Final = _MAPPING.key(_MAPPING.max_possible) - _MAPPING.key(_MAPPING.min_possible) + 1
#: Magnitudes at or below this count in a sketch's zero bin (as DDSketch.add decides).
SKETCH_MIN_MAGNITUDE: Final = _MAPPING.min_possible
# The mapping's protobuf form, as the library writes it; every sketch message copies it.
_PB_MAPPING: Final = KeyMappingProto.to_proto(_MAPPING)

#: One sign of a sketch as its occupied bins: (keys ascending, their counts, each > 0).
SketchBins = tuple[Sequence[int], Sequence[float]]


def sketch_key(magnitude: float) -> int:
    """The bin key of a magnitude above SKETCH_MIN_MAGNITUDE in every Vigil sketch: callers that
    keep bin counts themselves (the windows stage) compute it once per value and reuse it."""
    return _MAPPING.key(magnitude)


# LogarithmicMapping.key(v) is int(ceil(log(v, 2) * multiplier) + offset); these are its own
# attributes, and the tests check that sketch_key_function agrees with it for any value.
_KEY_MULTIPLIER: Final[float] = _MAPPING._multiplier
_KEY_OFFSET: Final[float] = _MAPPING._offset


def sketch_key_function() -> tuple[float, float]:
    """(multiplier, offset) such that `int(math.ceil(math.log(m, 2) * multiplier) + offset)` is
    `sketch_key(m)`, the same float operations in the same order: for code that bins many values
    in one expression instead of one call per value."""
    return _KEY_MULTIPLIER, _KEY_OFFSET


def _store_from_counts(first_key: int, counts: Sequence[float]) -> DenseStore:
    """A DenseStore holding `counts` for keys first_key, first_key+1, ... (set via its documented
    attributes, as DenseStore.copy does: restoring must not cost one add() per bin)."""
    store = DenseStore()
    if counts:
        store.bins = list(counts)  # a copy: the caller's list must not change when we add
        store.offset = store.min_key = first_key
        store.max_key = first_key + len(counts) - 1
        store.count = sum(store.bins)
    return store


def _store_from_sparse(keys: Sequence[int], counts: Sequence[float]) -> DenseStore:
    """A DenseStore from (key, count) pairs; keys ascending."""
    if not keys:
        return DenseStore()
    first = keys[0]
    dense = [0.0] * (keys[-1] - first + 1)
    for key, count in zip(keys, counts, strict=True):
        dense[key - first] += count
    return _store_from_counts(first, dense)


def _occupied(store: DenseStore) -> tuple[int, list[float]] | None:
    """(first key, counts) of the store's occupied key range, or None when empty."""
    if store.count == 0:
        return None
    return store.min_key, store.bins[store.min_key - store.offset:store.max_key - store.offset + 1]


def _sparse(first_key: int, counts: list[float]) -> tuple[list[int], list[float]] | None:
    """(keys, counts) of the non-empty bins when that is the smaller form, else None.

    A few values far apart (a metric that jumped 10x in a window: ~115 bins at 1%) are much
    smaller as pairs; a busy window fills most bins and is smaller dense. The count of empty bins
    and their positions are C-level scans, so the check costs little.
    """
    filled = len(counts) - counts.count(0.0)
    if 2 * filled >= len(counts):
        return None
    return list(itertools.compress(itertools.count(first_key), counts)), list(itertools.compress(counts, counts))


def _store_state(store: DenseStore) -> dict[str, Any] | None:
    occupied = _occupied(store)
    if occupied is None:
        return None
    sparse = _sparse(*occupied)
    if sparse is None:
        return {"first_key": occupied[0], "counts": occupied[1]}
    return {"keys": sparse[0], "counts": sparse[1]}


def _store_from_state(state: dict[str, Any] | None) -> DenseStore:
    if state is None:
        return DenseStore()
    if "keys" in state:
        return _store_from_sparse(state["keys"], state["counts"])
    return _store_from_counts(state["first_key"], state["counts"])


def _bins_of(store: DenseStore) -> SketchBins:
    """The occupied bins of a DenseStore as (keys, counts) pairs."""
    occupied = _occupied(store)
    if occupied is None:
        return (), ()
    first_key, counts = occupied
    return list(itertools.compress(itertools.count(first_key), counts)), list(itertools.compress(counts, counts))


def _fill_pb_store(pb_store: Any, bins: SketchBins) -> None:
    """Write the bins into an empty protobuf Store of a DDSketch message: contiguous or sparse,
    whichever is smaller (as `_sparse` decides for the occupied key range)."""
    pb_store.SetInParent()  # present even when empty, as DDSketchProto.to_proto writes it
    keys, counts = bins
    if not keys:
        return
    first = keys[0]
    span = keys[-1] - first + 1
    # float counts: upb takes ints for a double field too, but converts them about twice as slowly
    float_counts = map(float, counts)
    if 2 * len(keys) < span:
        # Filled in place, in key order: upb writes a map in its hash-table order, which a copy of
        # the Store (say, passed to the DDSketch constructor) would change, and so the bytes.
        pb_store.binCounts.update(zip(keys, float_counts, strict=True))
        return
    dense = [0.0] * span
    for key, count in zip(keys, float_counts, strict=True):
        dense[key - first] = count
    pb_store.contiguousBinIndexOffset = first
    pb_store.contiguousBinCounts.extend(dense)


def _sketch_bytes(positive: SketchBins, negative: SketchBins, zero_count: float) -> bytes:
    """ddsketch's protobuf DDSketch of the bins, built once (what DDSketchProto.to_proto writes, with
    the stores trimmed to their occupied bins)."""
    message = ddsketch_pb.DDSketch(mapping=_PB_MAPPING, zeroCount=zero_count)
    _fill_pb_store(message.positiveValues, positive)
    _fill_pb_store(message.negativeValues, negative)
    return message.SerializeToString()


def _bins_quantiles(qs: Iterable[float], positive: SketchBins, negative: SketchBins, zero_count: float, *,
                    lo: float, hi: float) -> list[float]:
    """The q-quantiles (0 <= q <= 1) of a non-empty sketch given by its bins, exactly as
    MetricAggregate.quantile computes them with DDSketch.get_quantile_value, for several q at once.

    DenseStore.key_at_rank walks the bins until the running count passes the rank; running counts
    only grow at occupied bins, so a binary search over the running counts of the occupied bins
    finds the same key. Every float operation below is the library's, in the library's order.
    """
    pos_keys, pos_counts = positive
    neg_keys, neg_counts = negative
    # The same left-to-right sums as DenseStore.key_at_rank's running count and its `count` (empty bins add 0).
    pos_running = list(itertools.accumulate(pos_counts))
    neg_running = list(itertools.accumulate(neg_counts))
    pos_total = float(pos_running[-1]) if pos_running else 0.0
    neg_total = float(neg_running[-1]) if neg_running else 0.0
    count = neg_total + zero_count + pos_total
    values: list[float] = []
    for q in qs:
        if q == 0.0:
            values.append(float(lo))
            continue
        if q == 1.0:
            values.append(float(hi))
            continue
        rank = q * (count - 1)
        estimate: float
        if rank < neg_total:
            reversed_rank = neg_total - rank - 1
            i = bisect_left(neg_running, reversed_rank + 1)  # key_at_rank(lower=False): running >= rank + 1
            estimate = -_MAPPING.value(neg_keys[i] if i < len(neg_keys) else neg_keys[-1])
        elif rank < zero_count + neg_total:
            estimate = 0.0
        else:
            i = bisect_right(pos_running, rank - zero_count - neg_total)  # key_at_rank(lower=True): running > rank
            estimate = _MAPPING.value(pos_keys[i] if i < len(pos_keys) else pos_keys[-1])
        values.append(float(min(max(estimate, lo), hi)))
    return values


def _window_record(*, subject: str, name: str, metric: str, window_start_ms: int, size_ms: int, count: int,
                   sum: float, min: float, max: float, last: float) -> dict[str, Any]:
    """The summary fields of a vigil.WindowAggregate (the caller adds quantiles and sketch)."""
    if count == 0:
        raise ValueError(f"{_window_label(subject, name, metric, window_start_ms)} is empty: "
                         "only windows that saw a value are published")
    return {
        "subject": subject,
        "name": name,
        "metric": metric,
        "window_start": window_start_ms,
        "window_end": window_start_ms + size_ms,
        "size_ms": size_ms,
        "count": count,
        "sum": sum,
        "min": min,
        "max": max,
        "mean": sum / count,
        "last": last,
    }


def record_from_bins(*, subject: str, name: str, metric: str, window_start_ms: int, size_ms: int, count: int,
                     sum: float, min: float, max: float, last: float, positive: SketchBins, negative: SketchBins,
                     zero_count: float) -> dict[str, Any]:
    """The vigil.WindowAggregate record of a window kept as summary values and sketch bins (keys as
    in MetricAggregate.from_bins), equal to `MetricAggregate.from_bins(...).to_window_record(...)`
    but without building a DDSketch: quantiles in one pass over the bins, the sketch message once."""
    record = _window_record(subject=subject, name=name, metric=metric, window_start_ms=window_start_ms,
                            size_ms=size_ms, count=count, sum=sum, min=min, max=max, last=last)
    zero = float(zero_count)  # as from_bins hands it to the sketch
    quantiles = _bins_quantiles(WINDOW_QUANTILES.values(), positive, negative, zero, lo=min, hi=max)
    record.update(zip(WINDOW_QUANTILES, quantiles, strict=True))
    record["sketch"] = _sketch_bytes(positive, negative, zero)
    return record


def _store_from_proto(pb_store: Any) -> DenseStore:
    """A DenseStore from a protobuf Store, whether it uses contiguous or sparse bin counts."""
    counts: dict[int, float] = dict(pb_store.binCounts)
    for i, count in enumerate(pb_store.contiguousBinCounts):
        key = pb_store.contiguousBinIndexOffset + i
        counts[key] = counts.get(key, 0.0) + count
    keys = sorted(key for key, count in counts.items() if count)
    if keys and keys[-1] - keys[0] >= _MAX_KEY_SPAN:
        raise ValueError(f"the sketch's bins span {keys[-1] - keys[0] + 1} keys; a {RELATIVE_ACCURACY:.0%} sketch "
                         f"never needs more than {_MAX_KEY_SPAN}")
    return _store_from_sparse(keys, [counts[key] for key in keys])


def _window_label(subject: Any, name: Any, metric: Any, window_start_ms: Any) -> str:
    """How errors name a window: 'metric load1 of web1/load, window starting 2026-01-01T00:00:00.000Z'."""
    start = format_time_ms(window_start_ms) if isinstance(window_start_ms, int) else repr(window_start_ms)
    return f"metric {metric} of {subject}/{name}, window starting {start}"


class MetricAggregate:
    """The aggregate of one metric over one window. `add` is the hot path (per metric, per event, per
    window size): it builds no containers; the sketch grows its bins in chunks now and then."""

    __slots__ = ("_negative", "_positive", "_sketch", "count", "last", "last_time_ms", "max", "min", "sum")

    def __init__(self, sketch: tuple[DenseStore, DenseStore, float] | None = None) -> None:
        """An empty aggregate; `sketch`: the sketch's positive and negative stores and zero count to
        start from instead of empty ones (the summary values are the caller's to set then)."""
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        #: the value with the latest event time (ties: the one added later), NaN while empty
        self.last = math.nan
        self.last_time_ms = -(2**63)
        if sketch is None:
            self._reset_sketch(DenseStore(), DenseStore(), 0.0)
        else:
            self._reset_sketch(*sketch)

    def _reset_sketch(self, positive: DenseStore, negative: DenseStore, zero_count: float) -> None:
        # Keeping our own references to the stores lets us serialise them without reaching into the
        # sketch's private attributes; merge() and copy paths update these same objects in place.
        self._positive = positive
        self._negative = negative
        self._sketch = BaseDDSketch(mapping=_MAPPING, store=positive, negative_store=negative,
                                    zero_count=zero_count)

    # -- updates ------------------------------------------------------------------------------------
    def add(self, value: float, time_ms: int) -> None:
        """Add one observation at event time `time_ms`. `value` must be finite (normalize_event
        guarantees it); out-of-order times are fine, `last` keeps the latest by event time."""
        self._sketch.add(value)
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if time_ms >= self.last_time_ms:
            self.last = value
            self.last_time_ms = time_ms

    def merge(self, other: MetricAggregate) -> None:
        """Fold `other` into this aggregate: the result describes the union of both windows."""
        if other.count == 0:
            return
        self._sketch.merge(other._sketch)
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_time_ms >= self.last_time_ms:
            self.last = other.last
            self.last_time_ms = other.last_time_ms

    @classmethod
    def from_bins(cls, *, count: int, sum: float, min: float, max: float, last: float, last_time_ms: int,
                  positive: dict[int, float], negative: dict[int, float], zero_count: float) -> MetricAggregate:
        """An aggregate from summary values and sketch bin counts kept elsewhere (keys from
        `sketch_key` of each value's magnitude; values within SKETCH_MIN_MAGNITUDE of 0 in zero_count)."""
        pos_keys, neg_keys = sorted(positive), sorted(negative)
        agg = cls((_store_from_sparse(pos_keys, [positive[k] for k in pos_keys]),
                   _store_from_sparse(neg_keys, [negative[k] for k in neg_keys]), float(zero_count)))
        agg.count, agg.sum, agg.min, agg.max = count, sum, min, max
        agg.last, agg.last_time_ms = last, last_time_ms
        return agg

    def copy(self) -> MetricAggregate:
        """An independent copy (for update functions that must not mutate their input)."""
        clone = MetricAggregate()
        clone.merge(self)
        return clone

    # -- reads --------------------------------------------------------------------------------------
    @property
    def mean(self) -> float | None:
        """Exact mean, None while empty."""
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1) within 1% relative accuracy, None while empty.

        The exact extremes are known, so q=0 and q=1 are exactly min and max, and estimates are
        clamped to [min, max] (a bucket's representative value may lie just outside them).
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, got {q}")
        if self.count == 0:
            return None
        if q == 0.0:
            return float(self.min)
        if q == 1.0:
            return float(self.max)
        lo, hi, value = self.min, self.max, self._sketch.get_quantile_value(q)
        assert lo is not None and hi is not None and value is not None  # count > 0: set with the first value
        return float(min(max(value, lo), hi))

    def __repr__(self) -> str:
        return (f"MetricAggregate(count={self.count}, sum={self.sum}, min={self.min}, max={self.max}, "
                f"last={self.last})")

    # -- table state --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (no infinities or NaN: an empty aggregate has null min/max/last)."""
        empty = self.count == 0
        return {
            "count": self.count,
            "sum": self.sum,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "last": None if empty else self.last,
            "last_time_ms": None if empty else self.last_time_ms,
            "sketch": {
                "zero": self._sketch.count - self._positive.count - self._negative.count,
                "positive": _store_state(self._positive),
                "negative": _store_state(self._negative),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricAggregate:
        """Inverse of to_dict."""
        if not data["count"]:
            return cls()
        sketch = data["sketch"]
        agg = cls((_store_from_state(sketch["positive"]), _store_from_state(sketch["negative"]),
                   float(sketch["zero"])))
        agg.count = data["count"]
        agg.sum = data["sum"]
        agg.min = data["min"]
        agg.max = data["max"]
        agg.last = data["last"]
        agg.last_time_ms = data["last_time_ms"]
        return agg

    # -- vigil.WindowAggregate ----------------------------------------------------------------------
    def sketch_bytes(self) -> bytes:
        """The sketch in ddsketch's protobuf format, bins trimmed to the occupied range."""
        # the zero count as DDSketchProto.to_proto reads it (the sketch keeps no public accessor for it)
        return _sketch_bytes(_bins_of(self._positive), _bins_of(self._negative), self._sketch._zero_count)

    def to_window_record(self, *, subject: str, name: str, metric: str, window_start_ms: int,
                         size_ms: int) -> dict[str, Any]:
        """The vigil.WindowAggregate record of this (non-empty) aggregate for the given window."""
        record = _window_record(subject=subject, name=name, metric=metric, window_start_ms=window_start_ms,
                                size_ms=size_ms, count=self.count, sum=self.sum, min=self.min, max=self.max,
                                last=self.last)
        for field, q in WINDOW_QUANTILES.items():
            record[field] = self.quantile(q)
        record["sketch"] = self.sketch_bytes()
        return record

    @classmethod
    def from_window_record(cls, record: dict[str, Any]) -> MetricAggregate:
        """Rebuild an aggregate from a vigil.WindowAggregate (to merge windows into longer views).

        The record does not say when `last` was observed; it is taken as the window's last ms, so
        merging windows keeps the `last` of the latest window. Raises ValueError for a record whose
        sketch is missing, unreadable, or not mergeable with Vigil's.
        """
        label = _window_label(record.get("subject"), record.get("name"), record.get("metric"),
                              record.get("window_start"))
        data = record.get("sketch")
        if not data:
            raise ValueError(f"{label} has no sketch: its quantiles cannot be merged")
        message = ddsketch_pb.DDSketch()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise ValueError(f"{label}: the sketch is not a DDSketch protobuf ({exc})") from None
        mapping = message.mapping
        if not math.isclose(mapping.gamma, _MAPPING.gamma, rel_tol=1e-12) or mapping.indexOffset != 0 \
                or mapping.interpolation != ddsketch_pb.IndexMapping.NONE:
            accuracy = (mapping.gamma - 1) / (mapping.gamma + 1) if mapping.gamma else 0.0
            raise ValueError(f"{label}: the sketch has relative accuracy {accuracy:.4g} (or another index "
                             f"mapping); only {RELATIVE_ACCURACY:.0%} logarithmic sketches merge with Vigil's")
        try:
            positive, negative = _store_from_proto(message.positiveValues), _store_from_proto(message.negativeValues)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        agg = cls((positive, negative, float(message.zeroCount)))
        agg.count = record["count"]
        agg.sum = record["sum"]
        agg.min = record["min"]
        agg.max = record["max"]
        agg.last = record["last"]
        agg.last_time_ms = record["window_end"] - 1
        return agg

