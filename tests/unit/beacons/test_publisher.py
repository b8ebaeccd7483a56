"""The spooling publisher over a fake sink: direct delivery, spooling while the far end is down,
oldest-first delivery when it is back, the outage report, rejects, and shutdown."""

from __future__ import annotations

from app.beacons.publisher import RUNNER_EVENT_NAME, SpoolingPublisher
from app.model.events import Severity
from tests.conftest import wait_until
from tests.unit.beacons.conftest import FakeSink, ev


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(sink: FakeSink, spool, clock: Clock | None = None, **kwargs) -> SpoolingPublisher:
    return SpoolingPublisher(sink, spool, subject="web1", tags={"role": "web"}, clock=clock or Clock(),
                             retry_initial_s=1.0, retry_max_s=8.0, **kwargs)


def delivered_seqs(sink: FakeSink, name: str = "load") -> list[int]:
    return [int(e.metrics["seq"]) for e in sink.delivered if e.name == name]


def test_direct__events_go_straight_through(sink: FakeSink, make_spool) -> None:
    pub = make(sink, make_spool())
    for i in range(3):
        pub.publish(ev(seq=i))
    pub.step()
    assert delivered_seqs(sink) == [0, 1, 2]
    assert not pub.spooling and pub.stats.delivered_direct == 3


def test_outage__spooled_then_delivered_oldest_first_with_a_report(sink: FakeSink, make_spool) -> None:
    clock = Clock()
    spool = make_spool()
    pub = make(sink, spool, clock)
    sink.up = False
    pub.publish(ev(seq=0))
    pub.step()                      # sent; the delivery report says it failed → spooled
    assert pub.spooling and len(spool) == 1
    for i in range(1, 4):           # while spooling, new events queue up behind it
        pub.publish(ev(seq=i))
    pub.step()
    assert len(spool) == 4 and sink.delivered == []

    clock.now += 1.0                # retry due, still down: backs off (1s, then 2s)
    pub.step()
    assert len(spool) == 4
    sink.up = True
    clock.now += 1.0                # not due yet (backoff doubled)
    pub.step()
    assert sink.delivered == []
    clock.now += 1.0
    pub.step()
    assert delivered_seqs(sink) == [0, 1, 2, 3]
    assert not pub.spooling
    pub.step()                      # the report was sent after the spool; its delivery report comes now
    (report,) = [e for e in sink.delivered if e.name == RUNNER_EVENT_NAME]
    assert (report.severity, report.tags["change"], report.tags["role"]) == (Severity.OK, "spool-drained", "web")
    assert (report.metrics["spooled"], report.metrics["delivered"], report.metrics["dropped"]) == (4, 4, 0)

    pub.publish(ev(seq=4))          # direct again
    pub.step()
    assert delivered_seqs(sink) == [0, 1, 2, 3, 4]


def test_outage_past_the_bound__report_says_what_was_dropped(sink: FakeSink, make_spool) -> None:
    clock = Clock()
    pub = make(sink, make_spool(max_events=3), clock)
    sink.refuse = True              # send itself fails (registry unreachable): straight to the spool
    for i in range(5):
        pub.publish(ev(seq=i))
    pub.step()
    sink.refuse = False
    clock.now += 1.0
    pub.step()
    assert delivered_seqs(sink) == [2, 3, 4]
    pub.step()
    (report,) = [e for e in sink.delivered if e.name == RUNNER_EVENT_NAME]
    assert report.severity == Severity.WARNING
    assert (report.metrics["dropped"], report.metrics["max_events"]) == (2, 3)
    assert "dropped the 2 oldest past the spool bound (3 events" in report.text


def test_leftovers_from_a_previous_run_go_first(sink: FakeSink, make_spool, tmp_path) -> None:
    old = make_spool(directory=tmp_path / "s")
    for i in range(3):
        old.append(ev(seq=i))
    old.close()
    pub = make(sink, make_spool(directory=tmp_path / "s"))
    pub.publish(ev(seq=3))
    pub.step()
    assert delivered_seqs(sink) == [0, 1, 2, 3]


def test_a_rejected_event_is_dropped_and_counted_not_retried(sink: FakeSink, make_spool) -> None:
    pub = make(sink, make_spool())
    sink.reject_names = {"bad"}
    pub.publish(ev("bad"))
    pub.publish(ev(seq=1))
    pub.step()
    assert pub.stats.rejected == 1 and delivered_seqs(sink) == [1] and not pub.spooling


def test_close__delivers_what_is_queued(sink: FakeSink, make_spool) -> None:
    pub = make(sink, make_spool())
    pub.publish(ev(seq=0))
    pub.close(timeout_s=5)
    assert delivered_seqs(sink) == [0] and sink.closed and pub.left_in_spool == 0


def test_close__keeps_what_could_not_be_delivered(sink: FakeSink, make_spool, tmp_path) -> None:
    pub = make(sink, make_spool(directory=tmp_path / "s"))
    sink.up = False
    pub.publish(ev(seq=0))
    pub.publish(ev(seq=1))
    pub.close(timeout_s=0)
    assert pub.left_in_spool == 2
    again = make_spool(directory=tmp_path / "s")  # the lock was released
    assert [int(e.metrics["seq"]) for _, e in again.peek(10)] == [0, 1]


def test_threaded__delivers_and_survives_an_outage(sink: FakeSink, make_spool) -> None:
    pub = SpoolingPublisher(sink, make_spool(), subject="web1", retry_initial_s=0.05, retry_max_s=0.1,
                            probe_timeout_s=0.1).start()
    try:
        pub.publish(ev(seq=0))
        wait_until(lambda: delivered_seqs(sink) == [0], timeout_s=10, message="direct delivery")
        sink.up = False
        for i in range(1, 4):
            pub.publish(ev(seq=i))
        wait_until(lambda: pub.spooling, timeout_s=10, message="events to be spooled")
        sink.up = True
        wait_until(lambda: any(e.name == RUNNER_EVENT_NAME for e in sink.delivered), timeout_s=10,
                   message="the spool to drain")
        assert delivered_seqs(sink) == [0, 1, 2, 3]
    finally:
        pub.close(timeout_s=5)
    assert sink.closed


def test_queue_full_drops_and_counts(sink: FakeSink, make_spool) -> None:
    pub = make(sink, make_spool(), queue_size=2)
    for i in range(3):
        pub.publish(ev(seq=i))
    assert pub.stats.dropped_queue_full == 1
    pub.step()
    assert delivered_seqs(sink) == [0, 1]
