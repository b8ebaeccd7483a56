"""Metric aggregates: exact statistics, DDSketch quantiles within accuracy, merging, serialisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from ddsketch import DDSketch
from ddsketch.pb.proto import DDSketchProto
from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline.aggregate import (
    RELATIVE_ACCURACY,
    WINDOW_QUANTILES,
    MetricAggregate,
    _bins_of,
    _bins_quantiles,
    _occupied,
    _sparse,
    record_from_bins,
)

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
# Magnitudes below ~2.2e-308 are indistinguishable from 0 to DDSketch: allow that absolute slack.
TINY = 1e-300
VALUES = st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), min_size=1, max_size=200)
#: also zeros of both signs, magnitudes at and below the sketch's zero bin, and extremes
EDGY_VALUES = st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
                       | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.3e-308, -2.3e-308, 1e300, -1e300]),
                       min_size=1, max_size=200)


def aggregate(values: list[float], times_ms: list[int] | None = None) -> MetricAggregate:
    agg = MetricAggregate()
    for value, time_ms in zip(values, times_ms or range(len(values)), strict=True):
        agg.add(value, time_ms)
    return agg


def json_round_trip(agg: MetricAggregate) -> MetricAggregate:
    return MetricAggregate.from_dict(orjson.loads(orjson.dumps(agg.to_dict())))


def quantiles(agg: MetricAggregate) -> list[float | None]:
    return [agg.quantile(q) for q in QUANTILES]


@pytest.mark.parametrize(
    ("values", "times_ms", "expected"),
    [
        pytest.param([5.0], [1], (1, 5.0, 5.0, 5.0, 5.0, 5.0), id="one value"),
        pytest.param([1.0, 3.0, 2.0], [1, 2, 3], (3, 6.0, 1.0, 3.0, 2.0, 2.0), id="in order: last is the newest"),
        pytest.param([1.0, 3.0, 2.0], [3, 1, 2], (3, 6.0, 1.0, 3.0, 2.0, 1.0), id="out of order: last by event time"),
        pytest.param([1.0, 2.0], [7, 7], (2, 3.0, 1.0, 2.0, 1.5, 2.0), id="same time: the later add wins"),
        pytest.param([-2.0, 0.0, 4.0], [1, 2, 3], (3, 2.0, -2.0, 4.0, 2 / 3, 4.0), id="negative and zero"),
        pytest.param([7, 8], [1, 2], (2, 15.0, 7, 8, 7.5, 8), id="integers"),
    ],
)
def test_add__exact_statistics(values: list[float], times_ms: list[int],
                               expected: tuple[int, float, float, float, float, float]) -> None:
    agg = aggregate(values, times_ms)
    assert (agg.count, agg.sum, agg.min, agg.max, agg.mean, agg.last) == pytest.approx(expected)


def test_empty__has_no_quantiles_and_no_mean() -> None:
    agg = MetricAggregate()
    assert (agg.count, agg.mean, agg.quantile(0.5)) == (0, None, None)
    assert json_round_trip(agg).count == 0


def test_quantile__outside_zero_to_one_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"quantile must be between 0 and 1, got 1\.5"):
        aggregate([1.0]).quantile(1.5)


def assert_within_accuracy(estimate: float | None, values: list[float], q: float) -> None:
    """DDSketch's guarantee: within `alpha` (relative) of the order statistic at rank q*(n-1)."""
    assert estimate is not None
    low = float(np.quantile(values, q, method="lower"))
    high = float(np.quantile(values, q, method="higher"))
    slack = RELATIVE_ACCURACY * max(abs(low), abs(high)) + TINY
    assert low - slack <= estimate <= high + slack, f"q={q}: {estimate} not within 1% of [{low}, {high}]"


@settings(deadline=None)
@given(values=VALUES)
def test_quantile__within_sketch_accuracy_of_numpy(values: list[float]) -> None:
    agg = aggregate(values)
    for q in QUANTILES:
        assert_within_accuracy(agg.quantile(q), values, q)


def test_quantile__a_large_skewed_sample_is_within_accuracy() -> None:
    values = np.random.default_rng(7).lognormal(mean=0.0, sigma=2.0, size=20_000).tolist()
    agg = aggregate(values)
    for q in QUANTILES:
        assert_within_accuracy(agg.quantile(q), values, q)


def test_quantile__extremes_are_the_exact_min_and_max() -> None:
    agg = aggregate([0.31, 17.0, 4.2])
    assert (agg.quantile(0.0), agg.quantile(1.0)) == (0.31, 17.0)


@settings(deadline=None)
@given(left=VALUES, right=VALUES)
def test_merge__equals_the_aggregate_of_the_union(left: list[float], right: list[float]) -> None:
    merged = aggregate(left)
    merged.merge(aggregate(right, list(range(len(left), len(left) + len(right)))))
    union = aggregate(left + right)
    assert (merged.count, merged.min, merged.max, merged.last) == (union.count, union.min, union.max, union.last)
    assert merged.sum == pytest.approx(union.sum, rel=1e-9, abs=1e-3)
    assert quantiles(merged) == quantiles(union)  # DDSketch merges bin by bin: exactly the same sketch


@pytest.mark.parametrize(
    ("left_times", "right_times", "expected_last"),
    [
        pytest.param([1, 2], [3, 4], 40.0, id="other is newer"),
        pytest.param([3, 4], [1, 2], 20.0, id="self is newer"),
        pytest.param([1, 4], [2, 4], 40.0, id="tie: other wins"),
    ],
)
def test_merge__keeps_the_last_value_by_event_time(left_times: list[int], right_times: list[int],
                                                   expected_last: float) -> None:
    merged = aggregate([10.0, 20.0], left_times)
    merged.merge(aggregate([30.0, 40.0], right_times))
    assert merged.last == expected_last


def test_merge__with_empty_aggregates_on_either_side() -> None:
    empty = MetricAggregate()
    empty.merge(aggregate([1.0, 2.0]))
    full = aggregate([1.0, 2.0])
    full.merge(MetricAggregate())
    assert quantiles(empty) == quantiles(full) == quantiles(aggregate([1.0, 2.0]))
    assert (empty.count, empty.sum, empty.last) == (full.count, full.sum, full.last) == (2, 3.0, 2.0)


def test_copy__is_independent() -> None:
    original = aggregate([1.0, 2.0])
    clone = original.copy()
    clone.add(1000.0, 99)
    assert (original.count, original.max, original.quantile(1.0)) == (2, 2.0, 2.0)
    assert (clone.count, clone.max) == (3, 1000.0)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0.5, 0.51, 0.52, 0.53], id="close values: dense bins"),
        pytest.param([0.001, 5.0, 100_000.0], id="far apart: sparse bins"),
        pytest.param([-3.0, -0.5, 0.0, 0.0, 2.0], id="negative, zero and positive"),
        pytest.param([-1e9], id="one negative"),
        pytest.param([0.0], id="only zero"),
    ],
)
def test_to_dict__round_trips_through_json_and_keeps_working(values: list[float]) -> None:
    agg = aggregate(values)
    restored = json_round_trip(agg)
    assert restored.to_dict() == orjson.loads(orjson.dumps(agg.to_dict()))
    assert quantiles(restored) == quantiles(agg)
    for a in (agg, restored):
        a.add(7.5, 100)
        a.add(-7.5, 50)
    assert quantiles(restored) == quantiles(agg)
    assert restored.to_dict() == agg.to_dict()


@settings(deadline=None)
@given(values=VALUES)
def test_to_dict__round_trip_keeps_every_quantile(values: list[float]) -> None:
    agg = aggregate(values)
    assert quantiles(json_round_trip(agg)) == quantiles(agg)


def test_to_dict__a_few_values_far_apart_stay_small() -> None:
    state = aggregate([0.001, 5.0, 100_000.0]).to_dict()
    assert state["sketch"]["positive"] == {"keys": state["sketch"]["positive"]["keys"], "counts": [1.0, 1.0, 1.0]}
    assert len(orjson.dumps(state)) < 250


def test_to_dict__restoring_does_not_share_lists_with_the_input() -> None:
    state = orjson.loads(orjson.dumps(aggregate([1.0, 1.01, 1.02]).to_dict()))
    frozen = orjson.dumps(state)
    MetricAggregate.from_dict(state).add(1.0, 9)
    assert orjson.dumps(state) == frozen


def test_window_record__is_a_valid_window_aggregate(assert_valid_record: Callable[..., None]) -> None:
    agg = aggregate([1.0, 2.0, 3.0, 4.0], [10, 40, 20, 30])
    record = agg.to_window_record(subject="web1", name="load", metric="load1", window_start_ms=60_000, size_ms=10_000)
    assert_valid_record("vigil.WindowAggregate", record)
    assert {k: v for k, v in record.items() if k != "sketch"} == {
        "subject": "web1", "name": "load", "metric": "load1", "window_start": 60_000, "window_end": 70_000,
        "size_ms": 10_000, "count": 4, "sum": 10.0, "min": 1.0, "max": 4.0, "mean": 2.5, "last": 2.0,
        **{field: agg.quantile(q) for field, q in WINDOW_QUANTILES.items()},
    }


@pytest.mark.parametrize("values", [[0.5, 0.51, 0.52], [0.001, 5.0, 100_000.0], [-3.0, 0.0, 2.0]])
def test_window_record__sketch_bytes_rebuild_the_same_aggregate(values: list[float]) -> None:
    agg = aggregate(values)
    record = agg.to_window_record(subject="s", name="n", metric="m", window_start_ms=0, size_ms=10_000)
    rebuilt = MetricAggregate.from_window_record(record)
    assert quantiles(rebuilt) == quantiles(agg)
    assert (rebuilt.count, rebuilt.sum, rebuilt.min, rebuilt.max, rebuilt.last) == (
        agg.count, agg.sum, agg.min, agg.max, agg.last)


def test_window_record__windows_roll_up_into_a_longer_view() -> None:
    first, second = aggregate([1.0, 9.0], [1, 2]), aggregate([5.0, 3.0], [10_001, 10_002])
    records = [a.to_window_record(subject="s", name="n", metric="m", window_start_ms=start, size_ms=10_000)
               for a, start in ((second, 10_000), (first, 0))]
    rollup = MetricAggregate()
    for record in records:
        rollup.merge(MetricAggregate.from_window_record(record))
    union = aggregate([1.0, 9.0, 5.0, 3.0])
    assert quantiles(rollup) == quantiles(union)
    assert (rollup.count, rollup.sum, rollup.last) == (4, 18.0, 3.0)  # last of the later window


def test_window_record__sketch_bytes_are_readable_by_ddsketch_itself() -> None:
    agg = aggregate([0.001, 5.0, 100_000.0, -2.0])
    record = agg.to_window_record(subject="s", name="n", metric="m", window_start_ms=0, size_ms=1000)
    other = aggregate([42.0])
    other.merge(MetricAggregate.from_window_record(record))
    assert other.count == 5
    assert math.isclose(other.quantile(0.5) or 0.0, 5.0, rel_tol=RELATIVE_ACCURACY)


def test_window_record__an_empty_aggregate_is_not_published() -> None:
    with pytest.raises(ValueError, match=r"metric m of s/n, window starting 1970-01-01T00:00:00\.000Z is empty"):
        MetricAggregate().to_window_record(subject="s", name="n", metric="m", window_start_ms=0, size_ms=1000)


def _record_with_sketch(sketch: bytes | None) -> dict[str, object]:
    return {"subject": "s", "name": "n", "metric": "m", "window_start": 0, "window_end": 1000, "size_ms": 1000,
            "count": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "mean": 1.0, "last": 1.0, "sketch": sketch}


def _foreign_sketch_bytes(relative_accuracy: float) -> bytes:
    sketch = DDSketch(relative_accuracy)
    sketch.add(1.0)
    return DDSketchProto.to_proto(sketch).SerializeToString()


def _corrupt_sketch_bytes() -> bytes:
    message = DDSketchProto.to_proto(DDSketch(RELATIVE_ACCURACY))
    message.positiveValues.binCounts.update({-2_000_000_000: 1.0, 2_000_000_000: 1.0})
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("sketch", "message"),
    [
        (None, "has no sketch: its quantiles cannot be merged"),
        (b"\xff\xff\xff", "the sketch is not a DDSketch protobuf"),
        (_foreign_sketch_bytes(0.02), "the sketch has relative accuracy 0.02"),
        (_corrupt_sketch_bytes(), "the sketch's bins span 4000000001 keys; a 1% sketch never needs more than"),
    ],
)
def test_window_record__unmergeable_sketches_are_refused_with_a_reason(sketch: bytes | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetricAggregate.from_window_record(_record_with_sketch(sketch))


def test_window_record__a_plain_ddsketch_of_the_same_accuracy_is_accepted() -> None:
    rebuilt = MetricAggregate.from_window_record(_record_with_sketch(_foreign_sketch_bytes(RELATIVE_ACCURACY)))
    assert rebuilt.quantile(0.5) == 1.0


def ddsketch_reference_bytes(agg: MetricAggregate) -> bytes:
    """The sketch bytes as the library writes them (DDSketchProto.to_proto), then trimmed to the
    occupied bins, contiguous or sparse: how sketch_bytes built them before it wrote the message once."""
    message = DDSketchProto.to_proto(agg._sketch)
    for pb_store, store in ((message.positiveValues, agg._positive), (message.negativeValues, agg._negative)):
        del pb_store.contiguousBinCounts[:]
        pb_store.contiguousBinIndexOffset = 0
        occupied = _occupied(store)
        if occupied is None:
            continue
        sparse = _sparse(*occupied)
        if sparse is None:
            pb_store.contiguousBinIndexOffset = occupied[0]
            pb_store.contiguousBinCounts.extend(occupied[1])
        else:
            pb_store.binCounts.update(zip(*sparse, strict=True))
    return message.SerializeToString()


@settings(deadline=None, max_examples=200)
@given(values=EDGY_VALUES, qs=st.lists(st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0.0, 1.0]),
                                       min_size=1, max_size=5))
def test_bins_quantiles__equal_ddsketch_quantiles_bit_for_bit(values: list[float], qs: list[float]) -> None:
    agg = aggregate(values)
    fast = _bins_quantiles(qs, _bins_of(agg._positive), _bins_of(agg._negative), agg._sketch._zero_count,
                           lo=agg.min, hi=agg.max)
    assert [repr(v) for v in fast] == [repr(agg.quantile(q)) for q in qs]  # repr: -0.0 and types count too


@settings(deadline=None, max_examples=200)
@given(values=EDGY_VALUES)
def test_record_from_bins__equals_the_ddsketch_record_bit_for_bit(values: list[float]) -> None:
    agg = aggregate(values)
    assert agg.sketch_bytes() == ddsketch_reference_bytes(agg)
    expected = agg.to_window_record(subject="s", name="n", metric="m", window_start_ms=0, size_ms=10_000)
    assert [expected[field] for field in WINDOW_QUANTILES] == [agg.quantile(q) for q in WINDOW_QUANTILES.values()]
    fast = record_from_bins(subject="s", name="n", metric="m", window_start_ms=0, size_ms=10_000, count=agg.count,
                            sum=agg.sum, min=agg.min, max=agg.max, last=agg.last, positive=_bins_of(agg._positive),
                            negative=_bins_of(agg._negative), zero_count=agg._sketch._zero_count)
    assert {k: (type(v), repr(v)) for k, v in fast.items()} == {k: (type(v), repr(v)) for k, v in expected.items()}
