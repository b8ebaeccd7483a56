"""The push sinks' shared delivery, one sender pass at a time (`step`) on a clock the test moves:
batching by size and delay, retries with backoff through the disk buffer, drops by reason."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.retry import Backoff
from app.sinks.config import PushConfig
from app.sinks.delivery import PushSink
from app.sinks.metrics import SinkMetrics
from app.sinks.types import Payload, SendFailed
from app.sinks.windows import ClosedWindow
from tests.conftest import wait_until
from tests.unit.sinks.conftest import window

NOW_MS = 1_700_000_000_000


class Subjects:
    """Encodes a batch as the subjects of its windows (one sample per window)."""

    def encode(self, windows: list[ClosedWindow]) -> Payload:
        return Payload(",".join(w.subject for w in windows).encode(), len(windows))


class Destination:
    """A transport whose answers the test decides: every body it accepted, in order."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.failing: SendFailed | None = None
        self.attempts = 0
        self.closed = False

    def send(self, body: bytes) -> None:
        self.attempts += 1
        if self.failing is not None:
            raise self.failing
        self.accepted.append(body.decode())

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0

    def __call__(self) -> float:
        return self.s


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Destination, Clock, SinkMetrics, Path]]:
    yield Destination(), Clock(), SinkMetrics(), tmp_path / "buffer"


def _sink(parts, **config) -> PushSink:
    destination, clock, metrics, directory = parts
    section = PushConfig.model_validate({"batch_windows": 3, "batch_delay": "1s", "retry_initial": "1s",
                                         "retry_max": "4s", **config})
    return PushSink("test", encoder=Subjects(), transport=destination, config=section, buffer_dir=directory,
                    metrics=metrics, monotonic=clock, wall_ms=lambda: NOW_MS,
                    backoff=Backoff(initial_s=1.0, max_s=4.0, rng=random.Random(1)))


def _windows(*subjects: str) -> list[ClosedWindow]:
    return [window(s, start_ms=NOW_MS - 20_000) for s in subjects]


def _value(metrics: SinkMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"sink": "test", **labels}) or 0.0


def test_batches_leave_full_or_after_the_delay(parts) -> None:
    destination, clock, metrics, _ = parts
    sink = _sink(parts)
    sink.offer(_windows("a", "b", "c", "d"))
    sink.step()
    assert destination.accepted == ["a,b,c"]  # full: at once
    clock.s += 0.5
    sink.step()
    assert destination.accepted == ["a,b,c"]  # "d" waits for more, up to the delay
    clock.s += 0.5
    sink.step()
    assert destination.accepted == ["a,b,c", "d"]
    assert _value(metrics, "vigil_sink_samples_sent_total") == 4
    sink.close()
    assert destination.closed


def test_send_held__the_partial_batch_leaves_at_the_next_pass_without_its_delay(parts) -> None:
    destination, _, _, _ = parts
    sink = _sink(parts)
    sink.offer(_windows("a", "b", "c", "d"))
    sink.step()
    assert destination.accepted == ["a,b,c"]
    sink.send_held()
    sink.step()
    assert destination.accepted == ["a,b,c", "d"] and sink.idle()  # no time passed
    sink.offer(_windows("e"))
    sink.step()
    assert destination.accepted == ["a,b,c", "d"]  # asked once: later partial batches wait again
    sink.close()


def test_destination_down__batches_wait_on_disk_in_order_then_drain_when_it_is_back(parts) -> None:
    destination, clock, metrics, _ = parts
    sink = _sink(parts)
    destination.failing = SendFailed("connection refused", retriable=True)
    sink.offer(_windows("a", "b", "c"))
    sink.step()
    sink.offer(_windows("d", "e", "f"))
    sink.step()  # behind the first batch: not tried, straight to disk
    assert destination.attempts == 1 and len(sink.buffer) == 2
    assert _value(metrics, "vigil_sink_buffered_bytes") > 0
    for _ in range(5):  # retried after each backoff delay, never before
        attempts = destination.attempts
        sink.step()
        assert destination.attempts == attempts or clock.s >= sink._retry_at
        clock.s += 4.0
        sink.step()
        assert destination.attempts == attempts + 1
    assert _value(metrics, "vigil_sink_retries_total") == 5
    assert _value(metrics, "vigil_sink_send_failures_total") == 6
    destination.failing = None
    clock.s += 4.0
    sink.step()
    assert destination.accepted == ["a,b,c", "d,e,f"]
    assert len(sink.buffer) == 0 and _value(metrics, "vigil_sink_buffered_bytes") == 0
    assert _value(metrics, "vigil_sink_samples_sent_total") == 6
    sink.close()


def test_a_refusal_for_good_is_dropped_and_counted_not_retried(parts) -> None:
    destination, clock, metrics, _ = parts
    sink = _sink(parts)
    destination.failing = SendFailed("HTTP 400: out of order sample", retriable=False)
    sink.offer(_windows("a", "b", "c"))
    sink.step()
    clock.s += 60
    sink.step()
    assert destination.attempts == 1 and len(sink.buffer) == 0
    assert _value(metrics, "vigil_sink_dropped_samples_total", reason="rejected") == 3
    destination.failing = None
    sink.offer(_windows("d", "e", "f"))
    sink.step()
    assert destination.accepted == ["d,e,f"]
    sink.close()


def test_a_refusal_for_good_of_a_buffered_batch_drops_it_and_goes_on(parts) -> None:
    destination, clock, metrics, _ = parts
    sink = _sink(parts)
    destination.failing = SendFailed("HTTP 503", retriable=True)
    sink.offer(_windows("a", "b", "c", "d", "e", "f"))
    sink.step()
    destination.failing = SendFailed("HTTP 400", retriable=False)
    clock.s += 10
    sink.step()
    assert _value(metrics, "vigil_sink_dropped_samples_total", reason="rejected") == 6
    assert len(sink.buffer) == 0
    sink.close()


def test_the_queue_is_bounded__overflow_dropped_and_counted_never_waited_for(parts) -> None:
    destination, _, metrics, _ = parts
    sink = _sink(parts, queue_windows=4)
    sink.offer(_windows("a", "b", "c"))
    sink.offer(_windows("d", "e", "f"))  # no sender pass in between: only one fits
    # counted in samples: 9 aggregates per window
    assert _value(metrics, "vigil_sink_dropped_samples_total", reason="queue_full") == 2 * 9
    sink.step()
    sink.step(stopping=True)
    assert destination.accepted == ["a,b,c"]
    assert sink.buffer.oldest() == Payload(b"d", 1)
    sink.close()


def test_windows_older_than_max_age_are_not_sent(parts) -> None:
    _, _, metrics, _ = parts
    sink = _sink(parts, max_age="1m")
    sink.offer([window("old", start_ms=NOW_MS - 120_000), *_windows("new")])
    sink.step(stopping=True)
    assert _value(metrics, "vigil_sink_dropped_samples_total", reason="too_old") == 9
    assert sink.buffer.oldest() == Payload(b"new", 1)
    sink.close()


def test_closing_keeps_what_is_in_memory_for_the_next_start(parts) -> None:
    destination = parts[0]
    sink = _sink(parts)
    sink.offer(_windows("a", "b"))
    sink.close()  # never started: closing runs the last pass itself
    assert destination.accepted == []
    again = _sink(parts)
    again.step()
    assert destination.accepted == ["a,b"]
    again.close()


def test_no_buffer__a_retriable_failure_drops_the_batch(parts) -> None:
    destination, _, metrics, _ = parts
    sink = _sink(parts, buffer_max_bytes=0)
    destination.failing = SendFailed("refused", retriable=True)
    sink.offer(_windows("a", "b", "c"))
    sink.step()
    assert _value(metrics, "vigil_sink_dropped_samples_total", reason="buffer_full") == 3
    sink.close()


def test_the_sender_thread_delivers_and_a_stop_is_prompt(parts) -> None:
    destination, _, _, _ = parts
    sink = _sink(parts)
    sink._monotonic = __import__("time").monotonic  # real time: the thread waits on it
    sink.start()
    sink.offer(_windows("a", "b", "c"))
    wait_until(lambda: destination.accepted == ["a,b,c"], timeout_s=10, message="the batch delivered")
    sink.close()
    assert sink._thread is not None and not sink._thread.is_alive()


@pytest.mark.parametrize(("stopping", "holding", "queued", "wake"), [
    (False, 0, 1, True),    # nothing held: the sender waits for nothing in particular
    (False, 1, 1, False),   # a partial batch held: its deadline wakes the sender
    (False, 1, 2, True),    # held + queued make a full batch (3)
    (False, 2, 5, True),
    (True, 1, 1, True),     # stopping: everything goes
])
def test_must_wake(stopping: bool, holding: int, queued: int, wake: bool) -> None:
    from app.sinks.delivery import must_wake

    assert must_wake(stopping=stopping, holding=holding, queued=queued, batch_windows=3) is wake


def test_offers_wake_the_sender_only_when_it_has_something_to_do_now(parts) -> None:
    destination, clock, _, _ = parts
    sink = _sink(parts)
    wakes: list[int] = []
    notify = sink._cond.notify

    def counted(n: int = 1) -> None:
        wakes.append(n)
        notify(n)

    sink._cond.notify = counted  # type: ignore[method-assign]
    sink.offer(_windows("a"))
    assert len(wakes) == 1  # the sender held nothing
    sink.step()
    sink.offer(_windows("b"))
    assert len(wakes) == 1  # it holds "a" until the deadline: no wake
    clock.s += 1.0
    sink.step()  # the deadline: "a" and "b" go
    assert destination.accepted == ["a,b"]
    sink.offer(_windows("c"))
    sink.step()
    sink.offer(_windows("d"))
    sink.offer(_windows("e"))
    assert len(wakes) == 3  # after "c" (nothing held), then "c"+"d"+"e" is a full batch
    sink.step()
    assert destination.accepted == ["a,b", "c,d,e"]
    sink.close()


def test_windows_settle_in_the_order_they_entered__sent_buffered_or_refused(parts) -> None:
    """windows_accepted / windows_settled: how a sender process knows what it has settled (app.sinks.process)."""
    destination, clock, _, _ = parts
    sink = _sink(parts, queue_windows=5)
    sink.offer(_windows("a", "b", "c", "d"))
    sink.offer(_windows("e", "f"))  # "f" does not fit: dropped at the door, never entered
    assert (sink.windows_accepted, sink.windows_settled) == (5, 0)
    sink.step()
    assert sink.windows_settled == 3  # a,b,c sent; d,e held for the delay
    destination.failing = SendFailed("connection refused", retriable=True)
    clock.s += 1.0
    sink.step()
    assert sink.windows_settled == 5 and len(sink.buffer) == 1  # on disk counts as settled
    sink.offer(_windows("g"))
    sink.close()  # stopping: what is in memory goes to the buffer
    assert (sink.windows_accepted, sink.windows_settled) == (6, 6)
