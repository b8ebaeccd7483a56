"""Getting beacon events to Kafka, and keeping them on local disk while Kafka is away.

    runner ─ publish() ─> queue ─> delivery thread ─> sink (Kafka: app.beacons.kafka_sink)
                                         └─> spool (disk) while the sink fails; drained oldest first

Two modes. Direct: the spool is empty and events go straight to the sink; each delivery is
reported back. Spooling: entered when a send or a delivery fails; every new event is appended to
the spool behind the older ones (so order is kept), and the thread probes the sink with
exponential backoff and, once it answers, delivers the spool in batches, oldest first. When the
spool is empty it is direct again, and a STATUS event `beacon-runner` reports the outage: how
many events were spooled, delivered and dropped past the bound.

Events in flight when Kafka went away fail only after the delivery timeout, so they may land in
the spool behind a few newer ones; otherwise delivery is oldest first.

The runner never waits for Kafka: publish() only enqueues. The sink is a small Protocol so the
publisher is tested with a fake sink and no broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from app.beacons.spool import Spool, SpoolStats
from app.model.events import Event, Kind, Severity, now_ms

__all__ = [
    "RUNNER_EVENT_NAME",
    "DeliveryCallback",
    "EventRejected",
    "EventSink",
    "Publisher",
    "PublisherStats",
    "SinkUnavailable",
    "SpoolingPublisher",
    "spool_report_event",
]

log = logging.getLogger(__name__)

#: The identity of events about the runner itself (start, spool reports).
RUNNER_EVENT_NAME = "beacon-runner"

#: (event, error text or None when delivered)
DeliveryCallback = Callable[[Event, str | None], None]


class SinkUnavailable(Exception):
    """The sink cannot take events now (Kafka or the registry unreachable, queue full): retry later."""


class EventRejected(Exception):
    """This event can never be sent (it does not encode): retrying will not help."""


class EventSink(Protocol):
    """Where events go (Kafka). Delivery is asynchronous: `on_done` reports each send's outcome."""

    def send(self, event: Event, on_done: DeliveryCallback) -> None:
        """Start sending; raise SinkUnavailable or EventRejected when it cannot even start."""

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports that have arrived (calls `on_done`)."""

    def flush(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every pending send to be reported."""

    def reachable(self, timeout_s: float) -> bool:
        """Does the other end answer now? (A cheap probe before draining the spool.)"""

    def close(self, timeout_s: float) -> None:
        """Flush, then report every send still pending as failed; free resources."""


class Publisher(Protocol):
    """What the runner publishes through."""

    def publish(self, event: Event) -> None:
        """Hand over an event; never blocks on the network."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver or spool everything handed over, then stop."""


@dataclass
class PublisherStats:
    """Counters since start (the spool keeps its own per-outage counts)."""

    published: int = 0
    delivered_direct: int = 0
    rejected: int = 0
    dropped_queue_full: int = 0


def spool_report_event(stats: SpoolStats, *, subject: str, tags: Mapping[str, str], time_ms: int) -> Event:
    """STATUS `beacon-runner`: Kafka is back and the spool was delivered (WARNING if some were dropped)."""
    bound = f"{stats.max_events} events / {stats.max_bytes} bytes"
    text = f"Kafka reachable again: delivered {stats.delivered} spooled event(s), oldest first"
    if stats.dropped:
        text += f"; dropped the {stats.dropped} oldest past the spool bound ({bound})"
    return Event(subject=subject, name=RUNNER_EVENT_NAME, kind=Kind.STATUS,
                 severity=Severity.WARNING if stats.dropped else Severity.OK, origin=RUNNER_EVENT_NAME, text=text,
                 tags={**tags, "change": "spool-drained"}, time=time_ms,
                 metrics={"spooled": float(stats.spooled), "delivered": float(stats.delivered),
                          "dropped": float(stats.dropped), "max_events": float(stats.max_events),
                          "max_bytes": float(stats.max_bytes)})


_STOP: Any = object()


class SpoolingPublisher:
    """Publisher over an EventSink with a Spool behind it (see the module docstring).

    Either `start()` the delivery thread, or (tests) drive it by calling `step()`; not both.
    """

    def __init__(self, sink: EventSink, spool: Spool, *, subject: str, tags: Mapping[str, str] | None = None,
                 delivery_timeout_s: float = 30.0, probe_timeout_s: float = 2.0, retry_initial_s: float = 1.0,
                 retry_max_s: float = 60.0, batch_size: int = 500, queue_size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._spool = spool
        self._subject = subject
        self._tags = dict(tags or {})
        self._delivery_timeout_s = delivery_timeout_s
        self._probe_timeout_s = probe_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._batch_size = batch_size
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._inflight = 0
        self._backoff_s = retry_initial_s
        self._retry_at = 0.0  # spooled events from a previous run are tried at once
        self._stopping = False
        self._closed = False
        self._close_deadline: float | None = None  # set by close(), read by the delivery thread
        self._thread: threading.Thread | None = None
        self.stats = PublisherStats()
        #: Events still in the spool when it was closed (delivered by the next run).
        self.left_in_spool = 0

    # -- the runner's side -------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Enqueue for delivery (a full queue drops the event, counted and logged)."""
        try:
            self._queue.put_nowait(event)
            self.stats.published += 1
        except queue.Full:
            self.stats.dropped_queue_full += 1
            log.error("beacon publisher queue full (%d): dropped %s/%s", self._queue.maxsize, event.subject,
                      event.name)

    def start(self) -> SpoolingPublisher:
        """Run delivery in a background thread."""
        self._thread = threading.Thread(target=self._run, name="beacon-publisher", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (within `timeout_s`), spool what could not be, close sink and spool."""
        if self._closed:
            return
        deadline = self._close_deadline = self._clock() + timeout_s
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s + self._probe_timeout_s + 5.0)
            if self._thread.is_alive():
                log.error("beacon publisher did not stop within %.0fs", timeout_s)
                return
        else:
            self._shutdown(deadline)
        self._closed = True

    @property
    def spooling(self) -> bool:
        """Are events waiting in the spool?"""
        return len(self._spool) > 0

    @property
    def pending(self) -> int:
        """How many events wait in the spool now."""
        return len(self._spool)

    # -- the delivery thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            try:
                self.step(self._wait_s())
            except Exception:  # a bug here must not silently stop delivery for good
                log.exception("beacon publisher: unexpected error; continuing")
                self._back_off("unexpected error")
        self._shutdown(self._close_deadline if self._close_deadline is not None
                       else self._clock() + self._delivery_timeout_s)

    def _wait_s(self) -> float | None:
        if self._inflight:
            return 0.1  # delivery reports arrive through poll()
        if len(self._spool):
            return max(0.01, self._retry_at - self._clock())
        return None  # nothing to do until an event comes

    def step(self, wait_s: float | None = 0.0) -> None:
        """One round: take queued events (waiting up to `wait_s`, None = until one comes), serve
        delivery reports, and drain the spool if a retry is due."""
        try:
            item = self._queue.get(timeout=wait_s) if wait_s != 0 else self._queue.get_nowait()
        except queue.Empty:
            item = None
        while item is not None:
            if item is _STOP:
                self._stopping = True
                break
            self._handle(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
        self._sink.poll(0)
        if len(self._spool) and self._clock() >= self._retry_at:
            self._drain(self._delivery_timeout_s)

    def _handle(self, event: Event) -> None:
        if len(self._spool):
            self._spool.append(event)  # behind the older ones: order is kept
            return
        try:
            self._sink.send(event, self._on_direct_done)
            self._inflight += 1
        except SinkUnavailable as exc:
            self._keep(event, str(exc))
        except EventRejected as exc:
            self._reject(event, exc)

    def _on_direct_done(self, event: Event, error: str | None) -> None:
        self._inflight -= 1
        if error is None:
            self.stats.delivered_direct += 1
        else:
            self._keep(event, error)

    def _keep(self, event: Event, reason: str) -> None:
        outage_starts = not len(self._spool)
        self._spool.append(event)
        if outage_starts:
            log.warning("cannot send events (%s): keeping them in %s until Kafka and the schema registry "
                        "take them again", reason, self._spool.directory)
            self._backoff_s = self._retry_initial_s
            self._back_off("first retry")

    def _reject(self, event: Event, exc: Exception) -> None:
        self.stats.rejected += 1
        log.error("beacon event %s/%s can never be sent, dropped: %s", event.subject, event.name, exc)

    def _back_off(self, reason: str) -> None:
        self._retry_at = self._clock() + self._backoff_s
        log.info("spool: %d event(s) waiting; %s; next try in %.0fs", len(self._spool), reason, self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, self._retry_max_s)

    def _drain(self, flush_timeout_s: float) -> None:
        """Deliver the spool oldest first, a batch at a time; back off at the first failure."""
        if not self._sink.reachable(self._probe_timeout_s):
            self._back_off("Kafka still unreachable")
            return
        while len(self._spool):
            batch = self._spool.peek(self._batch_size)
            results: dict[int, str | None] = {}
            sent: list[int] = []
            refused: str | None = None
            for seq, event in batch:
                try:
                    self._sink.send(event, partial(_record_result, results, seq))
                except SinkUnavailable as exc:
                    refused = str(exc)
                    break
                except EventRejected as exc:
                    self._reject(event, exc)
                    self._spool.discard([seq])
                    continue
                sent.append(seq)
            self._sink.flush(flush_timeout_s)
            delivered = [seq for seq in sent if seq in results and results[seq] is None]
            self._spool.remove(delivered)
            if refused is not None or len(delivered) < len(sent):
                failed = refused or next((results[s] for s in sent if results.get(s)), "no delivery report in time")
                self._back_off(f"delivery failed: {failed}")
                return
        self._backoff_s = self._retry_initial_s
        self._resumed()

    def _resumed(self) -> None:
        stats = self._spool.take_stats()
        if stats.spooled or stats.dropped or stats.delivered:
            log.warning("Kafka is back: delivered %d spooled event(s); %d dropped past the bound",
                        stats.delivered, stats.dropped)
            self._handle(spool_report_event(stats, subject=self._subject, tags=self._tags, time_ms=now_ms()))

    def _shutdown(self, deadline: float) -> None:
        self._stopping = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._handle(item)
        try:
            if len(self._spool) and deadline - self._clock() > self._probe_timeout_s:
                self._drain(max(0.0, deadline - self._clock()))
            self._sink.close(max(0.0, deadline - self._clock()))  # undelivered sends come back → spool
        finally:
            self.left_in_spool = len(self._spool)
            self._spool.close()


def _record_result(results: dict[int, str | None], seq: int, event: Event, error: str | None) -> None:
    results[seq] = error
