"""Where the registry keeps its state: a single-partition compacted Kafka topic.

Reads. Every instance tails the topic from the beginning (isolation.level=read_committed) and
folds it into a RegistryState (state.py). A read first asks Kafka for the partition's end (for a
read_committed client that is the last stable offset: everything committed, nothing in flight)
and waits until the local fold has got that far. So once any instance has answered a write, a
read on any instance sees it: read-your-writes across instances without a leader.

Writes. All instances share ONE transactional.id. A writer calls init_transactions(), which bumps
the producer epoch: every other instance's producer is fenced and its open transaction aborted.
The writer then folds the topic to its end (complete, because nobody else can commit any more),
plans the write from that state (next id, next version), and appends the records in a transaction.
If another instance initialised in the meantime, our commit fails as fenced and we start over
from init. Two instances can therefore never both commit a decision made from the same state,
which is what keeps ids unique and identical everywhere without electing a leader.
A producer that was not fenced is reused between writes: any other writer must fence it before
committing, and each write returns only once the local fold holds its own records (commit returns
before Kafka has written the commit markers), so the next write plans from a complete state too.

Outages. While Kafka is unreachable no instance can write, so the local fold is as complete as
anything can be: reads are answered from it (without waiting, once the outage is known; one read
at a time checks every `recheck_s` whether Kafka is back), and writes are refused at once with a
retriable 50001 that says so. The tail consumer and the writer recover by themselves when Kafka
returns: librdkafka reconnects, a consumer that fails is replaced at the offset the fold reached,
and a producer that failed is dropped (the next one's init_transactions settles what it left).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from app.bus.clients import BusUnavailable, make_admin, make_consumer, make_producer, take_available, wait_for_kafka
from app.config import ConfigError, Settings
from app.registry.errors import STORE_ERROR_PREFIX, ApiError
from app.registry.outage import Outage
from app.registry.state import Record, RegistryState
from app.retry import Backoff

__all__ = [
    "SCHEMAS_TOPIC",
    "WRITER_TRANSACTIONAL_ID",
    "InMemorySchemaStore",
    "KafkaSchemaStore",
    "SchemaStore",
    "StoreError",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Logical name of the registry's topic (settings.topic() adds the prefix).
SCHEMAS_TOPIC = "_vigil_schemas"
#: Logical transactional.id shared by every registry instance on one topic.
WRITER_TRANSACTIONAL_ID = "vigil-registry-writer"
# The broker does not answer a waiting read_committed fetch when commit markers move the last
# stable offset, so a write becomes visible to the fold only at the next fetch: this bounds write
# latency at the cost of a few idle fetches per second on a tiny topic.
_FOLD_FETCH_WAIT_MS = 50
# Errors from a partition that is momentarily without a leader (new topic, election).
_TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
})


# librdkafka lines that are part of normal operation here, demoted to DEBUG. Being fenced is how
# instances take turns writing, not a fault, but librdkafka reports it at FATAL ("This instance
# has been fenced by a newer instance") and complains about the messages of the aborted
# transaction when the dropped producer is destroyed. While Kafka is down every connection attempt
# is an ERROR line; the store says once that Kafka is unreachable and once that it is back.
_ROUTINE = ("fenced", "old epoch", "terminating with", "Connection refused", "Disconnected",
            "Coordinator load in progress", "brokers are down")


class _ClientLog:
    """librdkafka's log lines for the store's clients, routine ones demoted to DEBUG."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if any(routine in text for routine in _ROUTINE):
            level = logging.DEBUG
        log.log(level, "librdkafka: %s", text)


class StoreError(Exception):
    """The store cannot start (Kafka unreachable, topic unusable); the message says why."""


class SchemaStore(Protocol):
    """What the HTTP server needs: consistent reads and atomic planned writes."""

    #: the Kafka cluster the state lives in, and the name this registry's instances share
    kafka_cluster_id: str
    registry_id: str

    def read(self, query: Callable[[RegistryState], T]) -> T:
        """Run `query` on a state that includes every write answered before this call."""
        ...

    def write(self, plan: Callable[[RegistryState], tuple[T, list[Record]]]) -> T:
        """Run `plan` on the complete state and append its records atomically; return its result."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class InMemorySchemaStore:
    """A SchemaStore in a dict: for unit tests of the server and for trying the API without Kafka."""

    kafka_cluster_id = ""
    registry_id = "in-memory"

    def __init__(self) -> None:
        self.state = RegistryState()
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def read(self, query: Callable[[RegistryState], T]) -> T:
        """Run `query` under the lock."""
        with self._lock:
            return query(self.state)

    def write(self, plan: Callable[[RegistryState], tuple[T, list[Record]]]) -> T:
        """Run `plan` and fold its records in, under the lock."""
        with self._lock:
            result, records = plan(self.state)
            self.records += records
            self.state.apply_all(records)
            return result

    def close(self) -> None:
        """Nothing to release."""


class KafkaSchemaStore:
    """The registry's state in the compacted topic `settings.topic("_vigil_schemas")`."""

    def __init__(self, settings: Settings, *, read_timeout_s: float = 15.0, write_timeout_s: float = 30.0,
                 start_timeout_s: float = 60.0, probe_timeout_s: float = 3.0, recheck_s: float = 1.0,
                 recheck_timeout_s: float = 0.5) -> None:
        self.settings = settings
        self.topic = settings.topic(SCHEMAS_TOPIC)
        self.transactional_id = settings.topic(WRITER_TRANSACTIONAL_ID)
        self.kafka_cluster_id = ""
        self.registry_id = self.topic
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.start_timeout_s = start_timeout_s
        #: how long a read or write waits for Kafka to answer before taking it as unreachable
        self.probe_timeout_s = probe_timeout_s
        #: while Kafka is unreachable, how often a read or write checks whether it is back, and how
        #: long that check waits (Kafka that is back answers in milliseconds)
        self.recheck_s = recheck_s
        self.recheck_timeout_s = recheck_timeout_s
        self._tp = TopicPartition(self.topic, 0)
        self._state = RegistryState()
        self._position = 0  # next offset the fold has not seen (control markers included)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._producer: Producer | None = None
        self._tailer: threading.Thread | None = None
        self._probe: Any = None
        self._tail_error: str | None = None
        self._group = f"vigil-registry-{uuid.uuid4().hex[:12]}"  # never committed; assign() only
        self._outage = Outage(recheck_s)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KafkaSchemaStore:
        """Create the topic if missing, start tailing it and wait until the fold is current."""
        try:
            wait_for_kafka(self.settings, timeout_s=self.start_timeout_s)
            self._ensure_topic()
            # Never polled, so it cannot deliver log lines to Python: its failures come back as
            # exceptions from get_watermark_offsets instead.
            self._probe = make_consumer(self.settings, self._group, **{"isolation.level": "read_committed",
                                                                       "log_level": 0})
            consumer = self._tail_consumer()
        except (BusUnavailable, ConfigError, KafkaException) as exc:
            raise StoreError(f"schema registry store on topic {self.topic}: {exc}") from exc
        self._tailer = threading.Thread(target=self._tail, args=(consumer,), name=f"registry-tail-{self.topic}",
                                        daemon=True)
        self._tailer.start()
        try:
            self._catch_up(time.monotonic() + self.start_timeout_s)
        except ApiError as exc:
            self.close()
            raise StoreError(f"could not read topic {self.topic} to its end: {exc.message}") from exc
        log.info("registry store on %s ready at offset %d", self.topic, self._position)
        return self

    def close(self) -> None:
        """Stop tailing and drop the clients (safe to call twice)."""
        self._stopping.set()
        if self._tailer is not None:
            self._tailer.join(timeout=10)
            self._tailer = None
        with self._probe_lock:
            probe, self._probe = self._probe, None
        self._producer = None
        if probe is not None:
            try:
                probe.close()
            except Exception:  # on the way out: say so, raise nothing over what ended the store
                log.exception("registry topic %s: closing the offset probe failed", self.topic)

    def _tail_consumer(self) -> Any:
        """A consumer assigned to the topic from the offset the fold has reached."""
        consumer = make_consumer(self.settings, self._group, **{
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "fetch.wait.max.ms": _FOLD_FETCH_WAIT_MS, "logger": _ClientLog()})
        with self._cond:
            start = self._position or OFFSET_BEGINNING
        consumer.assign([TopicPartition(self.topic, 0, start)])
        return consumer

    def _ensure_topic(self) -> None:
        admin = make_admin(self.settings)
        md = admin.list_topics(timeout=10)
        self.kafka_cluster_id = md.cluster_id or ""
        found = md.topics.get(self.topic)
        if found is None or found.error is not None:
            spec = NewTopic(self.topic, num_partitions=1, replication_factor=-1,
                            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
            try:
                admin.create_topics([spec], request_timeout=15)[self.topic].result()
                log.info("created registry topic %s", self.topic)
            except KafkaException as exc:
                # Another instance starting at the same moment may have won the race.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            return
        if len(found.partitions) != 1:
            raise StoreError(f"registry topic {self.topic} has {len(found.partitions)} partitions; it needs "
                             f"exactly 1 so all instances fold the same order")

    # -- reading -----------------------------------------------------------------------------
    def _tail(self, consumer: Any) -> None:
        """Fold the topic into the state until closed; a consumer that fails is replaced."""
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while not self._stopping.is_set():
            try:
                self._tail_with(consumer)
                backoff.reset()
            except Exception as exc:  # librdkafka gave up on this consumer (or a bug): say so, start over
                log.exception("registry topic %s: reading failed; starting a new consumer", self.topic)
                with self._cond:
                    self._tail_error = f"reading failed: {type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):  # closing a consumer that failed may fail too
                    consumer.close()
            if self._stopping.wait(backoff.next_delay_s()):
                return
            try:
                consumer = self._tail_consumer()
            except Exception as exc:
                log.warning("registry topic %s: cannot create a consumer yet: %s", self.topic, exc)

    def _tail_with(self, consumer: Any) -> None:
        while not self._stopping.is_set():
            batch = take_available(consumer, 500, 0.2)
            if not batch:
                continue
            with self._cond:
                for msg in batch:
                    err = msg.error()
                    if err is None:
                        self._state.apply(msg.key(), msg.value())
                        self._position = max(self._position, msg.offset() + 1)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        # The EOF offset is past trailing transaction markers, which are
                        # never delivered as messages.
                        self._position = max(self._position, msg.offset())
                    else:
                        if err.str() != self._tail_error:  # once per kind of trouble, not per retry
                            log.warning("registry topic %s: %s", self.topic, err.str())
                        self._tail_error = err.str()
                        continue
                    if self._tail_error is not None:
                        log.info("registry topic %s: reading again at offset %d", self.topic, self._position)
                        self._tail_error = None
                self._cond.notify_all()

    def _end_offset(self, deadline: float) -> int:
        # For a read_committed client Kafka answers the last stable offset, so an instance
        # that is mid-transaction does not hold readers up.
        while True:
            with self._probe_lock:
                if self._probe is None or self._stopping.is_set():
                    raise ApiError.store_error("the registry store is closed")
                timeout_s = max(0.1, min(self.read_timeout_s, deadline - time.monotonic()))
                try:
                    return int(self._probe.get_watermark_offsets(self._tp, timeout=timeout_s, cached=False)[1])
                except KafkaException as exc:
                    err = exc.args[0]
                    # A topic created a moment ago, or a leader election, answers "try again".
                    if not (err.retriable() or err.code() in _TRANSIENT) or time.monotonic() >= deadline:
                        raise ApiError.store_error(f"cannot get the end of topic {self.topic}: {exc}") from exc
            self._stopping.wait(0.05)

    def _catch_up(self, deadline: float) -> None:
        self._await_position(self._end_offset(deadline), deadline)

    def _await_position(self, target: int, deadline: float) -> None:
        with self._cond:
            while self._position < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    why = f" (last consumer error: {self._tail_error})" if self._tail_error else ""
                    raise ApiError.timeout(f"reading topic {self.topic} reached offset {self._position}, "
                                           f"not {target}{why}")
                self._cond.wait(remaining)

    def _kafka_answers(self) -> bool:
        """Does Kafka tell the end of the topic in time (briefly, while an outage is known)?
        Records an outage's start and end."""
        wait_s = self.recheck_timeout_s if self._outage.is_down() else self.probe_timeout_s
        try:
            end = self._end_offset(time.monotonic() + wait_s)
        except ApiError as exc:
            if self._outage.down(exc.message.removeprefix(STORE_ERROR_PREFIX), time.monotonic()):
                log.warning("registry store: Kafka is unreachable (%s); answering reads from memory and refusing "
                            "writes until it is back", self._outage.reason)
            return False
        lasted_s = self._outage.up(time.monotonic())
        if lasted_s is not None:
            log.info("registry store: Kafka answers again (topic end at offset %d) after %.1f s", end, lasted_s)
        return True

    def _checked_kafka_answers(self) -> bool | None:
        """_kafka_answers() if it is this caller's turn to ask, else None (an outage is known)."""
        if not self._outage.may_check(time.monotonic()):
            return None
        try:
            return self._kafka_answers()
        finally:
            self._outage.checked()

    def read(self, query: Callable[[RegistryState], T]) -> T:
        """Run `query` once the fold includes everything committed before this call; while Kafka
        is unreachable (nobody can commit), on the state as it is."""
        if self._checked_kafka_answers():
            try:
                self._catch_up(time.monotonic() + self.read_timeout_s)
            except ApiError as exc:  # Kafka answered but went away again, or the fold lags behind
                log.warning("registry store: answering from memory: %s", exc.message)
        with self._cond:
            return query(self._state)

    # -- writing -----------------------------------------------------------------------------
    def write(self, plan: Callable[[RegistryState], tuple[T, list[Record]]]) -> T:
        """Fence other writers, fold to the end, plan, append in a transaction; retry if fenced.
        While Kafka is unreachable, refuse at once with a retriable 50001."""
        with self._write_lock:
            if not self._checked_kafka_answers():
                raise ApiError.store_error(
                    f"Kafka is unreachable ({self._outage.reason}); the registry answers reads from memory and "
                    f"refuses writes until Kafka is back: retry later")
            deadline = time.monotonic() + self.write_timeout_s
            attempt = 0
            while True:
                try:
                    return self._write_once(plan, deadline)
                except KafkaException as exc:
                    # Fenced by another instance, or Kafka trouble: drop the producer (a new one's
                    # init_transactions aborts whatever this one left open) and start over.
                    self._producer = None
                    attempt += 1
                    if time.monotonic() >= deadline or self._stopping.is_set():
                        raise ApiError.store_error(f"could not write to {self.topic} "
                                                   f"after {attempt} attempts: {exc}; retry later") from exc
                    log.info("registry write attempt %d failed (%s); retrying", attempt, exc)
                    # Jitter, so two instances that keep fencing each other fall out of step.
                    self._stopping.wait(random.uniform(0, min(0.5, 0.01 * 2**attempt)))

    def _write_once(self, plan: Callable[[RegistryState], tuple[T, list[Record]]], deadline: float) -> T:
        producer = self._producer or self._new_producer(deadline)
        self._catch_up(deadline)
        with self._cond:
            result, records = plan(self._state)  # ApiError (e.g. 409) propagates; nothing was sent
        if not records:
            return result
        offsets: list[int] = []

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                offsets.append(msg.offset())

        producer.begin_transaction()
        for key, value in records:
            producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=delivered)
        producer.flush(max(0.1, deadline - time.monotonic()))  # serves the delivery reports
        producer.commit_transaction(max(0.1, deadline - time.monotonic()))
        # commit_transaction returns before the commit markers are written, so the end offset may
        # not include our records yet. Wait until the fold has them: the next write reusing this
        # producer must plan from a state that includes this one (nobody fences us from ourselves),
        # and any read that starts after we answer, on any instance, then sees them too.
        if len(offsets) == len(records):
            self._await_position(max(offsets) + 1, deadline)
        else:
            self._producer = None  # unsure what was written: the next write re-inits, which settles it
            self._catch_up(deadline)
        return result

    def _new_producer(self, deadline: float) -> Producer:
        producer = make_producer(self.settings, **{
            "transactional.id": self.transactional_id,
            # An instance that dies mid-transaction blocks nobody: the next writer's init aborts
            # it, and readers wait only for the last stable offset. This bounds it regardless.
            "transaction.timeout.ms": 15000,
            "linger.ms": 0,
            "logger": _ClientLog(),
        })
        producer.init_transactions(max(0.1, deadline - time.monotonic()))
        self._producer = producer
        return producer
