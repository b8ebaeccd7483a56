"""The stream's ring: a client resuming with Last-Event-ID gets exactly what it missed, or is told to
start over when that is no longer held (or the id is from another server process)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.web.live import GAP, LiveRing, parse_event_id


def test_after__what_came_since() -> None:
    ring = LiveRing(10, epoch="e1")
    for i in range(5):
        ring.append("status", {"i": i})
    items = ring.after(2)
    assert items is not None and [x.seq for x in items] == [3, 4, 5]
    assert [x.data["i"] for x in items] == [2, 3, 4]
    assert ring.after(5) == []


def test_after__a_gap_once_the_ring_moved_on() -> None:
    ring = LiveRing(3, epoch="e1")
    for i in range(10):
        ring.append("alert", i)
    assert ring.oldest == 8
    assert ring.after(6) is GAP  # 7 is gone
    items = ring.after(7)
    assert items is not None and [x.seq for x in items] == [8, 9, 10]
    assert ring.after(11) is GAP  # ahead of this ring: a stale id


def test_resume_point__ids_of_this_process_only() -> None:
    ring = LiveRing(3, epoch="abc")
    ring.append("status", {})
    assert ring.resume_point(None) == 1  # a new client starts now
    assert ring.resume_point("abc-0") == 0
    assert ring.resume_point("other-0") is None
    assert ring.resume_point("garbage") is None
    assert ring.event_id() == "abc-1"
    assert parse_event_id("a-b-c-12") == ("a-b-c", 12)


@given(capacity=st.integers(1, 20), appended=st.integers(0, 60), last=st.integers(0, 70))
def test_after__never_skips_or_repeats(capacity: int, appended: int, last: int) -> None:
    ring = LiveRing(capacity, epoch="e")
    for i in range(appended):
        ring.append("status", i + 1)
    items = ring.after(last)
    if last > appended or (appended - last > capacity):
        assert items is GAP
    else:
        assert items is not None
        assert [x.seq for x in items] == list(range(last + 1, appended + 1))
