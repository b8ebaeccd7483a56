"""Tailing Vigil's topics into the UI server: a Kafka consumer per thread, assigned every partition
(no consumer group: each UI instance reads everything), decoding with the workers' serde.

Two tailers run: the live one (`status`, `silences`, `alerts`, `actions`, `action-results`,
`actions-suppressed`: what the board and the stream show, kept apart from bulk traffic so a
backlog of metric windows never delays a status change), and the metrics one (closed windows into
the history store).

Where a feed starts:
- compacted views (`status`, `silences`) from the beginning, every time: the index and the silence
  set are rebuilt in memory; the tailer reports `caught_up` once it has read to the end offsets it
  saw at the start;
- history (`alerts`, actions, results, `metrics`) from the offsets stored with the rows (app.web.store,
  same transaction), or, the first time, from the retention's start by timestamp.

A record whose schema the registry cannot give right now is not skipped: its partition is sought
back to it and read again after a backoff (the record may be fine). A record that cannot be decoded
at all is counted and skipped, with topic, partition and offset in the log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings
from app.model.serde import AvroSerde, DecodeError
from app.registry.errors import RegistryError
from app.retry import Backoff
from app.web.store import Batch, HistoryStore

__all__ = ["Feed", "IngestBatch", "Tailer", "live_feeds", "metrics_feeds"]

log = logging.getLogger(__name__)

#: Reconnecting after Kafka failed (or a topic is missing): full-jitter backoff up to this.
_RETRY_CONNECT_MAX_S: Final = 5.0
_LOG_EVERY: Final = 1000

Start = Literal["beginning", "stored"]
Decode = Literal["avro", "json"]


@dataclass(frozen=True)
class Feed:
    """One topic a tailer reads: its logical name, where it starts, how its values are decoded and
    what is done with a record (`kind`: status, silence, alert, action, result, suppressed, window)."""

    topic: str
    kind: str
    start: Start
    decode: Decode = "avro"
    #: for `stored` feeds read for the first time: how far back (ms)
    backfill_ms: int = 0


def live_feeds(history_ms: int) -> list[Feed]:
    """The live tailer's feeds."""
    return [Feed("status", "status", "beginning"), Feed("silences", "silence", "beginning", "json"),
            Feed("alerts", "alert", "stored", backfill_ms=history_ms),
            Feed("actions", "action", "stored", backfill_ms=history_ms),
            Feed("action-results", "result", "stored", backfill_ms=history_ms),
            Feed("actions-suppressed", "suppressed", "stored", "json", backfill_ms=history_ms)]


def metrics_feeds(metrics_ms: int) -> list[Feed]:
    """The metrics tailer's feed."""
    return [Feed("metrics", "window", "stored", backfill_ms=metrics_ms)]


@dataclass
class IngestBatch:
    """What one poll brought, for the server's event loop (app.web.hub)."""

    #: (subject, name, Status record or None for a deleted identity)
    statuses: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    #: (silence id, JSON value or None)
    silences: list[tuple[str, bytes | None]] = field(default_factory=list)
    #: stored history records the stream should carry: (kind, record)
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: False while the compacted views are still being read up to where they were at the start
    live: bool = True

    def __bool__(self) -> bool:
        return bool(self.statuses or self.silences or self.changes)


@dataclass
class TailerStats:
    """Counters for /healthz and the metrics endpoint."""

    records: int = 0
    skipped: int = 0
    registry_waits: int = 0
    last_error: str = ""
    caught_up: bool = False


class Tailer:
    """Reads some feeds in a daemon thread and hands each poll's result to `sink` (called on the
    tailer's thread: it must hand over, not work)."""

    def __init__(self, settings: Settings, feeds: Sequence[Feed], store: HistoryStore, serde: AvroSerde,
                 sink: Callable[[IngestBatch], None], *, name: str, window_sizes_ms: Sequence[int] = (),
                 poll_s: float = 0.1, max_batch: int = 5000) -> None:
        self.settings = settings
        self.feeds = {settings.topic(f.topic): f for f in feeds}
        self.store = store
        self.serde = serde
        self.sink = sink
        self.name = name
        self.window_sizes_ms = frozenset(window_sizes_ms)
        self.poll_s = poll_s
        self.max_batch = max_batch
        self.stats = TailerStats()
        #: set once the compacted feeds were read to the end offsets seen at the start
        self.caught_up = threading.Event()
        self._catch_up: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._backoff = Backoff(initial_s=0.2, max_s=10.0)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Tailer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vigil-ui-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError):
                pass
            self._consumer = None

    def _run(self) -> None:
        reported = False
        backoff = Backoff(initial_s=0.5, max_s=_RETRY_CONNECT_MAX_S)
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self._connect()
                    self.stats.last_error = ""
                self.poll_once()
                reported = False
                backoff.reset()
            except Exception as exc:  # Kafka down, a topic missing, the store failing: keep retrying
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if not reported:
                    log.warning("ui %s tailer: %s; retrying (every %.0fs at most)", self.name, exc,
                                _RETRY_CONNECT_MAX_S)
                    reported = True
                self._close()
                self._stop.wait(backoff.next_delay_s())

    # -- one step at a time (the thread, and tests) ----------------------------------------------------
    def _connect(self) -> None:
        consumer = make_consumer(self.settings, f"vigil-ui-{uuid.uuid4().hex[:12]}", **{
            "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": False,
            "fetch.wait.max.ms": 50, "fetch.min.bytes": 1})
        try:
            assignment = self._assignment(consumer)
        except BaseException:
            consumer.close()
            raise
        consumer.assign(assignment)
        self._consumer = consumer
        self._note_caught_up()

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        out: list[TopicPartition] = []
        self._catch_up = {}
        now_ms = int(time.time() * 1000)
        for topic, feed in self.feeds.items():
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {topic} does not exist (vigil topics apply)"))
            partitions = sorted(meta.partitions)
            if feed.start == "beginning":
                for p in partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    if high > low:
                        self._catch_up[(topic, p)] = high
                    out.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                continue
            stored = self.store.offsets(topic)
            missing = [p for p in partitions if p not in stored]
            if missing:
                found = consumer.offsets_for_times([TopicPartition(topic, p, now_ms - feed.backfill_ms)
                                                    for p in missing], timeout=10)
                for tp in found:
                    if tp.offset >= 0:
                        stored[tp.partition] = tp.offset
                    else:  # nothing that recent: start at the end
                        stored[tp.partition] = consumer.get_watermark_offsets(
                            TopicPartition(topic, tp.partition), timeout=10)[1]
            out.extend(TopicPartition(topic, p, stored[p]) for p in partitions)
        return out

    def _note_caught_up(self) -> None:
        """Once the compacted feeds are read to where they were at the start: say so, and tell the sink
        (an empty live batch: its views are complete, clients should refetch)."""
        if self._catch_up or self.caught_up.is_set():
            return
        self.stats.caught_up = True
        self.caught_up.set()
        log.info("ui %s tailer: caught up", self.name)
        if any(f.start == "beginning" for f in self.feeds.values()):
            self.sink(IngestBatch(live=True))

    def poll_once(self) -> None:
        """Read what is available, store it, hand it to the sink.

        Records are decoded before the store's write transaction is begun, and the status and silence
        changes are handed over before it: the store has one writer at a time (SQLite), and the metrics
        tailer writing thousands of closed windows would otherwise hold a status change back."""
        consumer = self._consumer
        assert consumer is not None
        msgs = consumer.consume(self.max_batch, timeout=self.poll_s)
        if not msgs:
            self._check_positions(consumer)
            return
        out = IngestBatch(live=self.caught_up.is_set())
        history: list[tuple[Message, str, dict[str, Any]]] = []
        held: dict[tuple[str, int], int] = {}
        next_offsets: dict[tuple[str, int], int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("ui %s tailer: %s", self.name, err.str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            where = (topic, partition)
            if where in held:
                continue
            feed = self.feeds[topic]
            try:
                record = self._take(msg, feed, out)
            except RegistryError as exc:
                if exc.is_retriable():
                    held[where] = offset
                    self.stats.registry_waits += 1
                    continue
                self._skip(topic, partition, offset, f"schema registry: {exc}")
            except DecodeError as exc:
                self._skip(topic, partition, offset, exc.reason)
            else:
                if record is not None:
                    history.append((msg, feed.kind, record))
            next_offsets[where] = offset + 1
            self.stats.records += 1
            end = self._catch_up.get(where)
            if end is not None and offset + 1 >= end:
                del self._catch_up[where]
        if out:  # the board's changes first (see above); history changes follow once stored
            self.sink(out)
        stored = {where: o for where, o in next_offsets.items() if self.feeds[where[0]].start == "stored"}
        if stored:
            with self.store.batch() as batch:
                for msg, kind, record in history:
                    try:
                        self._store(kind, record, batch)
                    except DecodeError as exc:
                        self._skip(msg.topic(), msg.partition(), msg.offset(), exc.reason)
                for (topic, partition), next_offset in stored.items():
                    batch.offset(topic, partition, next_offset)
            if batch.changes:
                self.sink(IngestBatch(changes=batch.changes, live=out.live))
        if held:
            for (topic, partition), offset in held.items():
                consumer.seek(TopicPartition(topic, partition, offset))
            delay = self._backoff.next_delay_s()
            log.warning("ui %s tailer: the schema registry cannot answer now; reading %s again in %.1fs",
                        self.name, ", ".join(f"{t}[{p}]@{o}" for (t, p), o in held.items()), delay)
            self._stop.wait(delay)
        else:
            self._backoff.reset()
        self._note_caught_up()

    def _check_positions(self, consumer: Consumer) -> None:
        """Compaction or transaction markers can leave the end offsets without a record to read."""
        if not self._catch_up:
            return
        for tp in consumer.position([TopicPartition(t, p) for t, p in self._catch_up]):
            if tp.offset >= self._catch_up.get((tp.topic, tp.partition), 0):
                self._catch_up.pop((tp.topic, tp.partition), None)
        self._note_caught_up()

    def _skip(self, topic: str, partition: int, offset: int, reason: str) -> None:
        self.stats.skipped += 1
        if self.stats.skipped <= 10 or self.stats.skipped % _LOG_EVERY == 0:
            log.warning("ui %s tailer: skipped %s[%d]@%d (%d so far): %s", self.name, topic, partition, offset,
                        self.stats.skipped, reason)

    def _decode(self, msg: Message, feed: Feed) -> Any:
        raw = msg.value()
        if raw is None:
            return None
        if feed.decode == "json":
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"not JSON: {exc}") from exc
        return self.serde.decode(raw, topic=msg.topic(), partition=msg.partition(), offset=msg.offset())

    def _take(self, msg: Message, feed: Feed, out: IngestBatch) -> dict[str, Any] | None:
        """Decode one record: a status or silence change goes into `out`; a history record (alert,
        action, result, suppressed, window) is returned for the store."""
        kind = feed.kind
        if kind == "silence":
            key = msg.key()
            if key is not None:
                out.silences.append((key.decode(errors="replace"), msg.value()))
            return None
        value = self._decode(msg, feed)
        if kind == "status":
            if value is None:
                key = (msg.key() or b"").decode(errors="replace")
                subject, _, name = key.partition("/")
                out.statuses.append((subject, name, None))
            elif isinstance(value, dict):
                out.statuses.append((str(value["subject"]), str(value["name"]), value))
            return None
        if not isinstance(value, dict):
            if value is not None:
                raise DecodeError(f"expected a record, got {type(value).__name__}")
            return None
        if kind == "window" and self.window_sizes_ms and value.get("size_ms") not in self.window_sizes_ms:
            return None
        return value

    @staticmethod
    def _store(kind: str, value: dict[str, Any], batch: Batch) -> None:
        """Write one history record into the store's open transaction."""
        try:
            if kind == "alert":
                batch.alert(value)
            elif kind == "action":
                batch.action(value)
            elif kind == "result":
                batch.result(value)
            elif kind == "suppressed":
                batch.suppressed(value)
            elif kind == "window":
                batch.window(value)
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"{kind} record lacks a field or has a wrong type: {exc}") from exc
