"""The delivery ledger on Kafka: the `deliveries` topic, shared by every HTTP bridge replica and kept
across restarts (app.bridges.ledger has the protocol, app.bridges.deliveries the decisions).

Each bridge writes its records with its own producer (acks=all, idempotent: one partition's records
stay in the order written) and reads every partition of the topic back with a consumer of its own
(assigned, not in a group: each replica reads everything). At start it reads from the time the
window began (offsets_for_times) to the end before it is ready, so a restarted bridge knows what it
accepted before. The topic is `compact,delete`: a key's last record is what counts, and records
older than its retention go; the retention must be at least the window plus the lease.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from app.bridges.deliveries import LedgerRecord
from app.bridges.ledger import DeliveryLedger, LedgerUnavailable, wall_clock_ms
from app.bridges.problems import KAFKA, Problems
from app.bus.clients import make_consumer, make_producer, release_producer
from app.bus.faults import is_transient
from app.config import Settings

__all__ = ["DELIVERIES_TOPIC", "KafkaDeliveryLedger"]

log = logging.getLogger(__name__)

#: Logical topic of the ledger (topics.yaml).
DELIVERIES_TOPIC = "deliveries"
_READ_BATCH = 500
_READ_WAIT_S = 0.1
_POLL_S = 0.1


class KafkaDeliveryLedger(DeliveryLedger):
    """DeliveryLedger on the `deliveries` topic; `start()` before use, `close()` after."""

    def __init__(self, settings: Settings, *, window_s: float, lease_s: float, wait_s: float,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        super().__init__(window_s=window_s, lease_s=lease_s, wait_s=wait_s, clock_ms=clock_ms)
        self.settings = settings
        self.topic = settings.topic(DELIVERIES_TOPIC)
        self._producer: Producer | None = make_producer(settings, **{"linger.ms": 0, "acks": "all"})
        # Never commits: every replica reads the whole topic from the window's start.
        self._consumer = make_consumer(settings, f"vigil-deliveries-{uuid.uuid4().hex}",
                                       **{"fetch.wait.max.ms": 100})
        self._problems = Problems()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        #: records read back that were not ledger records (skipped)
        self.unreadable = 0

    def start(self, timeout_s: float = 30.0) -> None:
        """Assign every partition from the window's start, read to the end, then keep reading in the
        background; LedgerUnavailable (with the reason) if that cannot be done within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        partitions = self._partitions(deadline)
        since_ms = self.clock_ms() - int((self.window_s + self.lease_s) * 1000)
        wanted = [TopicPartition(self.topic, p, since_ms) for p in partitions]
        while True:
            try:
                starts = self._consumer.offsets_for_times(wanted, timeout=max(1.0, deadline - time.monotonic()))
                ends = {tp.partition: self._consumer.get_watermark_offsets(
                    tp, timeout=max(1.0, deadline - time.monotonic()))[1] for tp in wanted}
                break
            except KafkaException as exc:  # e.g. no leader yet for a topic created a moment ago
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise LedgerUnavailable(f"cannot read the offsets of {self.topic}: {exc}") from exc
                self._closed.wait(0.2)
        assignment = []
        for tp in starts:
            start = tp.offset if tp.offset >= 0 else ends[tp.partition]  # -1: nothing that recent
            self._at(tp.partition, start)
            assignment.append(TopicPartition(self.topic, tp.partition, start))
        self._consumer.assign(assignment)
        self._spawn(self._read, "vigil-ledger-read")
        self._spawn(self._serve_reports, "vigil-ledger-poll")
        while any(self._position(p) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                behind = {p: end - self._position(p) for p, end in ends.items() if self._position(p) < end}
                raise LedgerUnavailable(f"could not read {self.topic} to its end within {timeout_s:g}s "
                                        f"(records left per partition: {behind})")
            self._closed.wait(0.02)
        log.info("delivery ledger ready: %d delivery key(s) of the last %gs from %s", len(self._index),
                 self.window_s + self.lease_s, self.topic)

    def _partitions(self, deadline: float) -> list[int]:
        """The topic's partitions; a topic created a moment ago may not be in the metadata yet, so
        it is asked for again until `deadline`."""
        while True:
            try:
                metadata = self._consumer.list_topics(self.topic, timeout=max(1.0, deadline - time.monotonic()))
            except KafkaException as exc:
                raise LedgerUnavailable(f"Kafka at {self.settings.kafka_bootstrap} did not answer: {exc}") from exc
            found = metadata.topics.get(self.topic)
            if found is not None and found.error is None and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() > deadline:
                raise LedgerUnavailable(f"topic {self.topic} does not exist: run `vigil topics apply`")
            self._closed.wait(0.2)

    def close(self) -> None:
        """Stop reading, send what is queued (bounded), close the clients. A second call does nothing."""
        self._closed.set()
        for thread in self._threads:
            thread.join(10)
        producer, self._producer = self._producer, None
        if producer is None:
            return
        producer.flush(5)
        dropped = release_producer(producer)  # whoever still holds the ledger must not keep the producer
        if dropped:
            log.warning("%d delivery record(s) not acknowledged by Kafka when the ledger closed: their "
                        "deliveries' claims lapse after the lease (%gs)", dropped, self.lease_s)
        self._consumer.close()

    def problems(self) -> list[str]:
        """Why the ledger failed lately (until a write succeeds again)."""
        return self._problems.lines()

    async def _append(self, record: LedgerRecord) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(result: tuple[int, int] | None, problem: str | None) -> None:
            if written.done():
                return
            if problem is not None:
                written.set_exception(LedgerUnavailable(problem))
            else:
                assert result is not None
                written.set_result(result)

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self._problems.cleared(KAFKA)
                result, problem = (msg.partition() or 0, msg.offset() or 0), None
            else:
                result, problem = None, f"writing to {self.topic} failed: {err.str()}"
                self._problems.failed(KAFKA, f"delivery ledger: {problem}")
            try:
                loop.call_soon_threadsafe(settle, result, problem)
            except RuntimeError:  # the loop is gone: nobody waits
                pass

        producer = self._producer
        if producer is None:
            raise LedgerUnavailable("the delivery ledger is closed (the bridge is stopping)")
        try:
            producer.produce(self.topic, key=record.key.encode(), value=record.to_json(), on_delivery=report)
        except (BufferError, KafkaException) as exc:
            problem = f"cannot write to {self.topic}: {exc}"
            self._problems.failed(KAFKA, f"delivery ledger: {problem}")
            raise LedgerUnavailable(problem) from exc
        return await written

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read(self) -> None:
        """Fold every record of the topic as it arrives; errors are logged, never end the thread."""
        while not self._closed.is_set():
            try:
                messages = self._consumer.consume(_READ_BATCH, timeout=_READ_WAIT_S)
            except Exception:
                log.exception("reading %s failed; continuing", self.topic)
                self._closed.wait(_READ_WAIT_S)
                continue
            for msg in messages:
                if msg.error() is not None:
                    log.debug("%s: %s", self.topic, msg.error())
                    continue
                self._applied(self._decode(msg), msg.partition() or 0, msg.offset() or 0)

    def _decode(self, msg: Message) -> LedgerRecord | None:
        value = msg.value()
        if value is None:
            return None  # a tombstone: nothing to fold
        try:
            return LedgerRecord.from_json(value)
        except ValueError as exc:
            self.unreadable += 1
            if self.unreadable <= 10:
                log.warning("%s[%s]@%s is not a delivery record (%s): skipped", self.topic, msg.partition(),
                            msg.offset(), exc)
            return None

    def _serve_reports(self) -> None:
        """Serve the producer's delivery reports (produce() alone never triggers them)."""
        producer = self._producer  # close() lets go of it only after this thread ended
        while producer is not None and not self._closed.is_set():
            try:
                producer.poll(_POLL_S)
            except Exception:
                log.exception("serving the delivery ledger's write reports failed; continuing")
                self._closed.wait(_POLL_S)
