"""Window math and values: assignment, closing, late events, order independence, exact agreement with
MetricAggregate (and its sketch), codecs; the fast vigil.Event normalisation path."""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline.aggregate import SKETCH_MIN_MAGNITUDE, MetricAggregate, sketch_key
from app.pipeline.status import StatusState
from app.pipeline.tracker import Tracked, TrackedCodec
from app.pipeline.validate import EVENT_TYPE, Rejection, _Invalid, _normalize, normalize_event
from app.pipeline.windows import (
    JSON_OPTIONS,
    NEGATIVE_BIN_BASE,
    ZERO_BIN,
    WindowCodec,
    add_samples,
    add_to_windows,
    close_due,
    copy_windows,
    folded,
    new_windows,
    observe,
    to_aggregate,
    to_window_record,
    value_bins,
)
from tests.unit.pipeline.conftest import NOW_MS

SIZES = (10_000, 60_000)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
#: also zeros of both signs, magnitudes at and below the sketch's zero bin, and extremes
edgy = finite | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.3e-308, -2.3e-308, 1e300, -1e300])


def _windows(events: list[tuple[int, float]], *, grace_ms: int = 5_000, watermark_ms: int = -1):
    windows = new_windows(SIZES)
    for time_ms, value in events:
        add_to_windows(windows, SIZES, {"x": value}, time_ms, grace_ms=grace_ms,
                       watermark_ms=watermark_ms)
    return windows


@pytest.mark.parametrize(("time_ms", "starts"), [
    (NOW_MS, (NOW_MS, NOW_MS)),
    (NOW_MS + 9_999, (NOW_MS, NOW_MS)),
    (NOW_MS + 10_000, (NOW_MS + 10_000, NOW_MS)),
    (NOW_MS + 59_999, (NOW_MS + 50_000, NOW_MS)),
    (NOW_MS + 60_000, (NOW_MS + 60_000, NOW_MS + 60_000)),
    (-1, (-10_000, -60_000)),  # before the epoch: windows still aligned to it
])
def test_add_to_windows__tumbling_windows_aligned_to_the_epoch(time_ms: int, starts: tuple[int, int]) -> None:
    windows = _windows([(time_ms, 1.0)])
    assert tuple(open_[0][0] for open_ in windows) == starts


def test_add_to_windows__reports_late_and_the_close_time_of_new_windows() -> None:
    windows = new_windows(SIZES)
    late, close_ms = add_to_windows(windows, SIZES, {"x": 1.0}, NOW_MS + 1, grace_ms=5_000,
                                    watermark_ms=NOW_MS)
    assert (late, close_ms) == (0, NOW_MS + 15_000)
    late, close_ms = add_to_windows(windows, SIZES, {"x": 1.0}, NOW_MS + 2, grace_ms=5_000,
                                    watermark_ms=NOW_MS)
    assert (late, close_ms) == (0, None)  # no new window
    # watermark at 15 s: the 10 s window [0, 10) closed (10 + 5 grace), the minute is open
    late, _ = add_to_windows(windows, SIZES, {"x": 1.0}, NOW_MS + 3, grace_ms=5_000,
                             watermark_ms=NOW_MS + 15_000)
    assert late == 1
    assert [folded(window[1]["x"])[0] for open_ in windows for window in open_] == [2, 3]  # the late one counted once


def test_add_to_windows__an_older_open_window_within_grace_still_counts() -> None:
    windows = _windows([(NOW_MS + 12_000, 1.0)])
    late, close_ms = add_to_windows(windows, SIZES, {"x": 5.0}, NOW_MS + 9_000, grace_ms=5_000,
                                    watermark_ms=NOW_MS + 12_000)
    assert (late, close_ms) == (0, NOW_MS + 15_000)  # [0, 10 s) opened behind the newest one
    assert [start - NOW_MS for start, _ in windows[0]] == [0, 10_000]
    assert folded(windows[1][0][1]["x"])[:4] == [2, 6.0, 1.0, 5.0]


def test_close_due__splits_closed_from_open_oldest_first() -> None:
    windows = _windows([(NOW_MS, 1.0), (NOW_MS + 12_000, 2.0), (NOW_MS + 25_000, 3.0)])
    closed, next_close = close_due(windows, SIZES, grace_ms=5_000, watermark_ms=NOW_MS + 27_000)
    assert [(size, start - NOW_MS) for size, start, _ in closed] == [(10_000, 0), (10_000, 10_000)]
    assert [[start - NOW_MS for start, _ in open_] for open_ in windows] == [[20_000], [0]]
    assert next_close == NOW_MS + 35_000
    assert close_due(windows, SIZES, grace_ms=5_000, watermark_ms=NOW_MS + 27_000)[0] == []


def test_copy_windows__updating_the_copy_never_changes_the_original() -> None:
    original = _windows([(NOW_MS, 1.0), (NOW_MS + 12_000, 2.0)])
    snapshot = repr(original)
    copy = copy_windows(original)
    for time_ms in (NOW_MS + 1, NOW_MS + 13_000, NOW_MS + 61_000):
        add_to_windows(copy, SIZES, {"x": 5.0, "y": -1.0}, time_ms, grace_ms=5_000, watermark_ms=-1)
    close_due(copy, SIZES, grace_ms=5_000, watermark_ms=NOW_MS + 100_000)
    assert repr(original) == snapshot


def test_copy_windows__shares_window_values_until_one_is_updated() -> None:
    original = _windows([(NOW_MS, 1.0), (NOW_MS + 12_000, 2.0)])  # 10 s: [0, 10) and [10, 20); 1 min: [0, 60)
    copy = copy_windows(original)
    assert all(c[1] is o[1] for c_open, o_open in zip(copy, original, strict=True)
               for c, o in zip(c_open, o_open, strict=True))
    add_to_windows(copy, SIZES, {"x": 5.0}, NOW_MS + 13_000, grace_ms=5_000, watermark_ms=-1)
    assert copy[0][0][1] is original[0][0][1]  # the older 10 s window was not touched: still shared
    assert copy[0][1][1] is not original[0][1][1] and copy[1][0][1] is not original[1][0][1]
    updated = copy[0][1][1]
    add_to_windows(copy, SIZES, {"x": 6.0}, NOW_MS + 14_000, grace_ms=5_000, watermark_ms=-1)
    assert copy[0][1][1] is updated  # copied once per copy_windows, then updated in place
    assert folded(copy[0][1][1]["x"])[:4] == [3, 13.0, 2.0, 6.0]
    assert folded(original[0][1][1]["x"])[:4] == [1, 2.0, 2.0, 2.0]


events_strategy = st.lists(st.tuples(st.integers(0, 130_000), st.sampled_from(["x", "y"]), edgy), max_size=12)


@settings(deadline=None, max_examples=150)
@given(first=events_strategy, batches=st.lists(st.tuples(events_strategy, st.integers(-1, 140_000)), max_size=4))
def test_copy_windows__copies_of_copies_never_change_any_earlier_state(
        first: list[tuple[int, str, float]], batches: list[tuple[list[tuple[int, str, float]], int]]) -> None:
    """Batch after batch (events within or past grace, windows opening and closing), each batch
    updates a copy of the previous state, as the tracker does: no earlier state ever changes, and
    each result equals updating a deep copy."""

    def apply(windows: Any, events: list[tuple[int, str, float]], watermark_ms: int) -> None:
        for time_ms, metric, value in events:
            add_to_windows(windows, SIZES, {metric: value}, NOW_MS + time_ms, grace_ms=5_000,
                           watermark_ms=NOW_MS + watermark_ms)
        close_due(windows, SIZES, grace_ms=5_000, watermark_ms=NOW_MS + watermark_ms)

    state = new_windows(SIZES)
    apply(state, first, -1)
    history = [(state, orjson.dumps(state, option=JSON_OPTIONS))]
    for events, watermark_ms in batches:
        expected = copy.deepcopy(state)
        apply(expected, events, watermark_ms)
        state = copy_windows(state)
        apply(state, events, watermark_ms)
        assert state == expected
        history.append((state, orjson.dumps(state, option=JSON_OPTIONS)))
    for earlier, encoded in history:
        assert orjson.dumps(earlier, option=JSON_OPTIONS) == encoded


def test_observe__adds_every_metric_of_an_event() -> None:
    window: dict = {}
    observe(window, {"x": 1.0, "y": 2.0}, NOW_MS)
    observe(window, {"x": 5.0}, NOW_MS - 1)  # older: `last` stays
    assert folded(window["x"])[:6] == [2, 6.0, 1.0, 5.0, 1.0, NOW_MS]
    assert folded(window["y"])[:6] == [1, 2.0, 2.0, 2.0, 2.0, NOW_MS]


@settings(deadline=None, max_examples=150)
@given(st.lists(edgy, min_size=1, max_size=100))
def test_observe__folding_pending_values_equals_adding_one_at_a_time(values: list[float]) -> None:
    """Values wait in `pending` and are folded FOLD_AT at a time: the summary is exactly (bit for
    bit, -0.0 included) what adding each value in order gives."""
    window: dict = {}
    for i, v in enumerate(values):
        observe(window, {"x": v}, NOW_MS + i)
    count, total, lo, hi, last, last_time, bins, pending = folded(window["x"])
    expected_total, expected_lo, expected_hi = values[0], values[0], values[0]
    for v in values[1:]:
        expected_total += v
        expected_lo = v if v < expected_lo else expected_lo
        expected_hi = v if v > expected_hi else expected_hi
    assert [repr(x) for x in (count, total, lo, hi, last)] == [
        repr(x) for x in (len(values), expected_total, expected_lo, expected_hi, values[-1])]
    assert (last_time, pending) == (NOW_MS + len(values) - 1, [])
    expected_bins: dict[int, int] = {}
    for v in values:
        expected_bins[_bin(v)] = expected_bins.get(_bin(v), 0) + 1
    assert bins == expected_bins


@settings(deadline=None, max_examples=300)
@given(st.lists(edgy, max_size=20))
def test_value_bins__are_the_sketch_keys_of_each_value(values: list[float]) -> None:
    assert value_bins(values) == [_bin(v) for v in values]


def _bin(value: float) -> int:
    """The bin of one value, from the sketch's own mapping (what value_bins must compute)."""
    if value > SKETCH_MIN_MAGNITUDE:
        return sketch_key(value)
    if value < -SKETCH_MIN_MAGNITUDE:
        return NEGATIVE_BIN_BASE + sketch_key(-value)
    return ZERO_BIN


@settings(deadline=None, max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 130_000), st.sampled_from(["x", "y"]), edgy, st.integers(-1, 140_000)),
                max_size=40))
def test_add_samples__equals_adding_events_one_at_a_time(events: list[tuple[int, str, float, int]]) -> None:
    """An identity's events of a batch, added at once (one size after the other), give the windows,
    late counts and opened close time of adding them one by one."""
    one_by_one = new_windows(SIZES)
    late, opened = 0, None
    for time_ms, metric, value, watermark_ms in events:
        n, close_ms = add_to_windows(one_by_one, SIZES, {metric: value}, NOW_MS + time_ms, grace_ms=5_000,
                                     watermark_ms=NOW_MS + watermark_ms)
        late += n
        if close_ms is not None and (opened is None or close_ms < opened):
            opened = close_ms
    at_once = new_windows(SIZES)
    samples = [(NOW_MS + t, {metric: value}, NOW_MS + w) for t, metric, value, w in events]
    assert add_samples(at_once, SIZES, samples, grace_ms=5_000) == (late, opened)
    assert orjson.dumps(at_once, option=JSON_OPTIONS) == orjson.dumps(one_by_one, option=JSON_OPTIONS)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 9_999), finite), min_size=1, max_size=60), st.randoms())
def test_window__equals_metric_aggregate_in_any_order(events: list[tuple[int, float]], rnd: random.Random) -> None:
    expected = MetricAggregate()
    for time_ms, value in events:
        expected.add(value, NOW_MS + time_ms)
    shuffled = [(NOW_MS + t, v) for t, v in events]
    rnd.shuffle(shuffled)
    obs = _windows(shuffled)[0][0][1]["x"]
    agg = to_aggregate(obs)
    assert (agg.count, agg.min, agg.max) == (expected.count, expected.min, expected.max)
    assert agg.sum == pytest.approx(expected.sum, rel=1e-9, abs=1e-6)
    assert agg.last_time_ms == expected.last_time_ms
    if len({t for t, _ in events}) == len(events):  # with distinct times `last` is unambiguous
        assert agg.last == expected.last
    for q in (0.5, 0.95, 0.99):
        assert agg.quantile(q) == expected.quantile(q)
    assert agg.sketch_bytes() == expected.sketch_bytes()


@settings(deadline=None, max_examples=200)
@given(st.lists(edgy, min_size=1, max_size=120))
def test_to_window_record__equals_the_metric_aggregate_record_bit_for_bit(values: list[float]) -> None:
    obs = _windows([(NOW_MS + i, v) for i, v in enumerate(values)])[0][0][1]["x"]
    expected = to_aggregate(obs).to_window_record(subject="s", name="n", metric="x", window_start_ms=NOW_MS,
                                                  size_ms=10_000)
    record = to_window_record(obs, subject="s", name="n", metric="x", window_start_ms=NOW_MS, size_ms=10_000)
    # repr: -0.0 against 0.0 and int against float count as differences too
    assert {k: (type(v), repr(v)) for k, v in record.items()} == {k: (type(v), repr(v)) for k, v in expected.items()}


@pytest.mark.parametrize("values", [[0.0, -0.0], [-3.5, 2.0, 0.0, -1e-300, 1e300], [1.0] * 5])
def test_window__negative_and_zero_values_land_in_the_right_bins(values: list[float]) -> None:
    expected = MetricAggregate()
    for i, v in enumerate(values):
        expected.add(v, NOW_MS + i)
    obs = _windows([(NOW_MS + i, v) for i, v in enumerate(values)])[0][0][1]["x"]
    assert to_aggregate(obs).sketch_bytes() == expected.sketch_bytes()


def test_codecs__round_trip() -> None:
    windows = _windows([(NOW_MS, 1.5), (NOW_MS + 1, -2.0), (NOW_MS + 61_000, 0.0)])
    codec = WindowCodec()
    assert codec.decode(codec.encode(windows[0][0][1])) == windows[0][0][1]
    status = StatusState(subject="a/b", name="c", state="OK", reported_state="OK", since_ms=1, last_seen_ms=2,
                         recent_transitions_ms=(1,), expected_by_ms=5)
    tracked = Tracked(status, windows, NOW_MS + 15_000, [(NOW_MS, "e1", 3, "")])
    tracked_codec = TrackedCodec(SIZES)
    assert tracked_codec.decode(tracked_codec.encode(tracked)) == tracked
    # a configured size dropped: its windows are dropped, the others kept
    assert TrackedCodec((60_000,)).decode(tracked_codec.encode(tracked)).windows == [windows[1]]
    # the window formats of earlier versions ([[metric, observations], ...]; no pending values) still read
    value = {metric: folded(obs) for metric, obs in windows[0][0][1].items()}
    old = [[metric, obs] for metric, obs in value.items()]
    assert codec.decode(orjson.dumps(old, option=JSON_OPTIONS)) == value
    older = {metric: obs[:7] for metric, obs in value.items()}
    assert codec.decode(orjson.dumps(older, option=JSON_OPTIONS)) == value


event_records = st.fixed_dictionaries({
    "id": st.text(min_size=0, max_size=5), "time": st.integers(NOW_MS - 10**9, NOW_MS + 10**9),
    "subject": st.text(max_size=4), "name": st.sampled_from(["load", " ", "", "x"]),
    "kind": st.sampled_from(["METRIC", "STATUS", "ARCHIVE", "OTHER"]), "severity": st.integers(-1, 4),
    "origin": st.just("t"), "text": st.text(max_size=3),
    "tags": st.dictionaries(st.text(max_size=2), st.text(max_size=2)),
    "metrics": st.dictionaries(st.text(max_size=2), st.floats(), max_size=3),
    "ttl": st.none() | st.floats(), "extended": st.none(), "trace_id": st.none() | st.text(max_size=3),
})


@settings(deadline=None, max_examples=300)
@given(event_records)
def test_normalize__fast_path_agrees_with_the_general_path(record: dict) -> None:
    fast = normalize_event(record, EVENT_TYPE, now_ms=NOW_MS, max_future_ms=300_000)
    try:
        general = _normalize(record, EVENT_TYPE, record["id"] or None, now_ms=NOW_MS, max_future_ms=300_000)
    except _Invalid as exc:  # the general path rejects: so does normalize_event, with its reason
        assert isinstance(fast, Rejection) and fast.reason == exc.reason
        return
    assert fast == general

