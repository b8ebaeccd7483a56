"""Closed windows from the pipeline's WindowAggregate records."""

from __future__ import annotations

import pytest

from app.sinks.windows import AGGREGATES, ClosedWindow, IdentityMemo, NotAWindow, window_label
from tests.unit.sinks.conftest import window, window_record


def test_from_record__identity_span_and_every_aggregate_in_order() -> None:
    w = ClosedWindow.from_record(window_record(start_ms=20_000, size_ms=60_000, value=2.0))
    assert (w.subject, w.name, w.metric, w.start_ms, w.end_ms, w.size_ms, w.window) == \
        ("web1", "load", "load1", 20_000, 80_000, 60_000, "1m")
    assert [a for a, _ in w.values] == list(AGGREGATES)
    assert dict(w.values)["count"] == 3.0 and dict(w.values)["sum"] == 6.0 and w.sample_count == 9


def test_from_record__absent_quantiles_make_no_samples() -> None:
    w = ClosedWindow.from_record(window_record(quantiles=False))
    assert [a for a, _ in w.values] == ["count", "sum", "min", "max", "mean", "last"]


@pytest.mark.parametrize(("change", "says"), [
    ({"subject": None}, "strings"), ({"size_ms": 0}, "integers"), ({"window_end": "x"}, "integers")])
def test_from_record__a_broken_record_is_not_a_window(change: dict, says: str) -> None:
    with pytest.raises(NotAWindow, match=says):
        ClosedWindow.from_record({**window_record(), **change})
    with pytest.raises(NotAWindow, match="KeyError"):
        ClosedWindow.from_record({"subject": "a"})


def test_window_label__as_people_write_sizes() -> None:
    assert [window_label(ms) for ms in (500, 10_000, 60_000, 90_000, 3_600_000)] == ["500ms", "10s", "1m", "1m30s",
                                                                                    "1h"]


def test_identity_memo__builds_once_per_identity_and_forgets_past_its_bound() -> None:
    built: list[str] = []

    def build(w: ClosedWindow) -> str:
        built.append(w.subject)
        return w.subject.upper()

    memo = IdentityMemo(build, max_entries=2)
    assert [memo.get(window(s)) for s in ("a", "a", "b", "a")] == ["A", "A", "B", "A"]
    assert built == ["a", "b"]
    memo.get(window("c"))  # a third identity: the memo starts over
    memo.get(window("a"))
    assert built == ["a", "b", "c", "a"]
