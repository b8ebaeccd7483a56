"""The Kafka worker: consume → decode → engine → produce, with changelogs, restore on assignment,
and commits under at-least-once or exactly-once.

At-least-once: at each commit interval (and whenever the consumer has caught up), outputs and
changelog records are produced and the offsets processed so far noted; processing goes on while
Kafka acknowledges them. Once every record up to that point is acknowledged
(app.runtime.deliveries), the stores are written with their changelog checkpoint, then the noted
consumer offsets are committed. A rebalance, a checkpoint() and shutdown wait for that instead (the
producer is flushed).
Exactly-once: everything (outputs, changelogs, dead letters, consumer offsets) goes in one Kafka
transaction per commit interval; stores are written locally only after the commit succeeded, so
local state never holds anything a crash could roll back. The transactional.id is stable per
instance, so a restarted worker fences its previous incarnation and aborts its open transaction.
"""

from __future__ import annotations

import gc
import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from app.bus.clients import make_admin, make_consumer, make_producer, take_available
from app.config import Settings
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient
from app.runtime.agent import Agent
from app.runtime.backends import RocksBackend
from app.runtime.deliveries import DeliveryTracker
from app.runtime.engine import DeadLetter, Engine, InRecord
from app.runtime.metrics import WorkerMetrics
from app.runtime.outputs import OutputEncoder
from app.runtime.recovery import plan_restore, restore_done
from app.runtime.store import PartitionStore, clear_store
from app.runtime.tables import Table
from app.runtime.windowed import WindowedTable
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec

__all__ = ["Guarantee", "Worker", "WorkerOptions", "commit_due"]

log = logging.getLogger(__name__)


#: The checkpoint a local-only store records when written (it has no changelog offset): it tells
#: "written here" from "never written", see Worker._needs_rebuild.
LOCAL_ONLY_CHECKPOINT = 0
#: Commits whose records may still await acknowledgement before the worker blocks on the producer.
MAX_PENDING_COMMITS = 3
#: At-least-once: per loop turn, a commit's writes are encoded and produced for this long plus a
#: quarter of the turn's processing time (more when the consumer found nothing), so a commit of
#: thousands of changed keys does not stall the records behind it.
COMMIT_SLICE_S = 0.005
#: How much of one partition the consumer fetches at once (librdkafka's default is 1 MiB, about 7,000
#: events). A turn hands the engine one batch per partition it took records of, and an agent pays
#: per batch and key (the pipeline copies each identity's state once per batch): with 1 MiB a
#: 20,000-record turn of a backlog spanned three partitions, ~9,000 records each; with 32 MiB a
#: backlog comes a partition at a time. Measured on the 1M-event pipeline benchmark: +13-17% events/s
#: (alternating runs). It caps only what a fetch may return (`queued.max.messages.kbytes` still
#: bounds memory); a consumer that has caught up fetches what arrived, as before.
FETCH_PARTITION_BYTES = 32 << 20
#: Writes encoded between two looks at the clock.
_SLICE_CHECK_EVERY = 64
#: Writes per backend write when a commit point's stores are persisted in slices.
_PERSIST_CHUNK = 2000


#: The --commit-interval-ms help of the commands that run a Worker.
COMMIT_INTERVAL_HELP = "default: 100 (exactly-once) / 5000 (at-least-once; also whenever caught up)"


class Guarantee(str, Enum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


@dataclass
class _StoreWrites:
    """One store's writes of a commit point: taken as values, encoded and produced in slices."""

    store: PartitionStore
    #: the changelog partition; None for a local-only store
    changelog: tuple[str, int] | None
    #: the values not encoded yet (the store's snapshot of its pending writes)
    left: Iterator[tuple[str, Any]]
    #: encoded so far, in order
    encoded: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    #: how many of `encoded` are written to the store's backend
    written: int = 0


@dataclass
class _PendingCommit:
    """A commit point: its writes are encoded and produced (maybe over several loop turns), then
    it is finished once every record of its epoch is acknowledged."""

    epoch: int
    offsets: list[TopicPartition]
    stores: list[_StoreWrites]
    started: float
    #: index in `stores` of the first store with writes left to encode
    next_store: int = 0
    #: index in `stores` of the first store not persisted yet
    next_persist: int = 0
    #: last changelog offset per changelog partition, once every record is acknowledged
    changelog_offsets: dict[tuple[str, int], int] | None = None

    @property
    def produced(self) -> bool:
        return self.next_store >= len(self.stores)


@dataclass
class WorkerOptions:
    app_id: str = "vigil-worker"
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    instance_id: str | None = None  # stable per worker instance; default: host name
    #: default: 100 ms exactly-once, 5000 ms at-least-once. At-least-once commits are also made as soon
    #: as the consumer finds nothing new, so the interval only bounds how much a crash replays while
    #: records keep flowing; a commit costs one encode and changelog record per changed key, so a
    #: longer interval folds more updates of a key into one.
    commit_interval_ms: int | None = None
    #: Records per loop turn at most. Only a backlog fills a turn (take_available takes what has
    #: arrived), and there larger batches cost less per record: an agent pays per batch and key (the
    #: pipeline copies each identity's state once per batch). 50,000 is a turn of about 1 s at full
    #: speed, which is how late a wall-clock timer or an HTTP query may be served while catching up
    #: (measured, 1M pipeline benchmark: +5-16% events/s over 20,000, alternating runs).
    max_batch: int = 50_000
    poll_timeout_ms: int = 100
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no HTTP server; 0: any free port
    clock: Callable[[], int] | None = None  # wall clock in ms (tests control it); default: time.time()
    topics_wait_s: float = 15.0  # how long to wait for source topics to exist (deployments: minutes)
    tune_gc: bool = True  # see Worker.run: CPython's default GC thresholds cost stream workers 30-45%

    @property
    def commit_interval(self) -> int:
        if self.commit_interval_ms is not None:
            return self.commit_interval_ms
        return 100 if self.guarantee == Guarantee.EXACTLY_ONCE else 5000


def commit_due(*, since_commit_s: float, interval_s: float, got: bool, writing: bool, uncommitted: bool) -> bool:
    """Whether the run loop commits now: at the interval, or as soon as the consumer is idle (a poll
    that waited the whole poll timeout got nothing) with something uncommitted. A poll that got
    nothing while a commit was still being written waited only briefly: a steady stream has such
    gaps all the time, and committing at each one re-encoded and re-sent every changed key several
    times a second (measured at 5,000 events/s: a commit every 0.2-0.5 s instead of every 5 s)."""
    return since_commit_s >= interval_s or (not got and not writing and uncommitted)


class Worker:
    """Runs agents against Kafka until stopped."""

    def __init__(self, settings: Settings, agents: list[Agent], options: WorkerOptions | None = None, *,
                 registry: RegistryClient | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.eos = self.options.guarantee == Guarantee.EXACTLY_ONCE
        self.instance_id = self.options.instance_id or socket.gethostname()
        self.app_id = self.options.app_id
        self.registry = registry or RegistryClient.from_settings(settings)
        self.serde = AvroSerde(self.registry)
        self.encoder = OutputEncoder(self.serde, self.registry)
        self.metrics = WorkerMetrics()
        self.state_dir = Path(settings.state_dir) / self.app_id / self.instance_id
        self.engine = Engine(agents, backend_factory=self._backend,
                             clock=self.options.clock or (lambda: int(time.time() * 1000)), checkpoint=self.commit,
                             settings=settings)
        self._decode_mode = self._decode_modes(agents)
        self._stop = threading.Event()
        self._offsets: dict[tuple[str, int], int] = {}
        self.deliveries = DeliveryTracker()
        self._pending: deque[_PendingCommit] = deque()
        self._in_txn = False
        self._last_commit = time.monotonic()
        #: records processed or timers fired since the last commit point
        self._uncommitted = False
        self._restoring = False
        self._started = threading.Event()
        #: held while processing and committing; HTTP queries take it to read consistent tables
        self.lock = threading.RLock()
        #: commits done (tests and harnesses wait on it); events_in already exported per agent
        self.commit_count = 0
        self._exported_in: dict[str, int] = {}
        self._source = {settings.topic(t): t for t in self.engine.topics}  # real name -> logical
        self.http = None
        self.consumer: Consumer | None = None

    # -- setup ----------------------------------------------------------------------------------------
    @staticmethod
    def _decode_modes(agents: list[Agent]) -> dict[str, str]:
        modes: dict[str, str] = {}
        for a in agents:
            if modes.setdefault(a.topic, a.decode) != a.decode:
                raise ValueError(f"agents on topic {a.topic} disagree on decode ({modes[a.topic]} vs {a.decode})")
        return modes

    def _backend(self, table: Table, partition: int) -> RocksBackend:
        return RocksBackend(self.state_dir / table.name / str(partition))

    def changelog(self, table: Table) -> str:
        return self.settings.topic(table.changelog_topic(self.app_id))

    def _ensure_changelogs(self) -> None:
        admin = make_admin(self.settings)
        wanted = [self.settings.topic(t) for t in self.engine.topics]
        # A topic created a moment ago may not be in metadata yet; in a fresh deployment the topics
        # job may still be running. Wait (saying for what), then fail with what to do.
        deadline = time.monotonic() + self.options.topics_wait_s
        next_log = time.monotonic() + 5
        while True:
            md = admin.list_topics(timeout=30)
            missing = [t for t in wanted if t not in md.topics or md.topics[t].error is not None]
            if not missing or time.monotonic() > deadline or self._stop.is_set():
                break
            if time.monotonic() > next_log:
                log.warning("waiting for topic(s) %s to exist (vigil topics apply)", ", ".join(missing))
                next_log = time.monotonic() + 10
            time.sleep(0.2)
        specs = []
        for logical in self.engine.topics:
            real = self.settings.topic(logical)
            if real not in md.topics or md.topics[real].error is not None:
                raise RuntimeError(f"source topic {real} does not exist: create it (vigil topics apply)")
            parts = md.topics[real].partitions
            replication = len(next(iter(parts.values())).replicas)
            for t in self.engine.tables_of(logical):
                if not t.changelog:
                    continue
                specs.append(TopicSpec(name=self.changelog(t), partitions=len(parts), replication=replication,
                                       config={"cleanup.policy": "compact"}))
        reconcile(admin, specs, dry_run=False)

    def _make_clients(self) -> None:
        iso = "read_committed" if self.eos else "read_uncommitted"
        self.consumer = make_consumer(self.settings, self.app_id, **{
            "isolation.level": iso, "enable.partition.eof": False, "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 262144, "max.partition.fetch.bytes": FETCH_PARTITION_BYTES,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 300000,
        })
        extra: dict[str, Any] = {"linger.ms": 5}
        if self.eos:
            extra.update({"transactional.id": f"{self.app_id}-{self.instance_id}", "transaction.timeout.ms": 30000})
        self.producer = make_producer(self.settings, **extra)
        if self.eos:
            self.producer.init_transactions(60)

    # -- producing ------------------------------------------------------------------------------------
    def _produce(self, topic: str, value: bytes | None, key: bytes | None, *, partition: int = -1,
                 headers: list[tuple[str, bytes]] | None = None, callback: Callable | None = None,
                 epoch: int | None = None) -> None:
        """Produce one record, counted in the open epoch, or in `epoch` (an ended one) if given."""
        if self.eos and not self._in_txn:
            self.producer.begin_transaction()
            self._in_txn = True
        while True:
            try:
                self.producer.produce(topic, value, key, partition=partition, headers=headers,
                                      on_delivery=callback or self.deliveries.on_delivery)
                if epoch is None:
                    self.deliveries.count += 1
                else:
                    self.deliveries.add(epoch, 1)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    # -- rebalance ------------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._restoring = True
        try:
            opened: list[tuple[Table, int, PartitionStore]] = []
            for tp in partitions:
                logical = self._source[tp.topic]
                opened += [(t, tp.partition, st) for t, st in self.engine.open_partition(logical, tp.partition)]
            restored = self._restore(opened)
            for tp in partitions:
                logical = self._source[tp.topic]
                self.engine.activate(logical, tp.partition)
                if self._needs_rebuild(logical, tp.partition, restored):
                    log.info("rebuilding the local-only tables of %s[%d]", logical, tp.partition)
                    self.engine.rebuild(logical, tp.partition)
            self.metrics.assigned.set(len(self.engine.assigned()))
            log.info("assigned %s", [(tp.topic, tp.partition) for tp in partitions])
        finally:
            self._restoring = False

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commit()
        for tp in partitions:
            self.engine.close_partition(self._source[tp.topic], tp.partition)
            self._offsets.pop((tp.topic, tp.partition), None)
        self.metrics.assigned.set(len(self.engine.assigned()))

    def _needs_rebuild(self, topic: str, partition: int, restored: set[tuple[str, int]]) -> bool:
        """Local-only tables are derived from the changelogged ones: rebuild them when those were
        restored from Kafka, or when they were never written here but the others hold state."""
        tables = self.engine.tables_of(topic)
        local = [t.stores[partition] for t in tables if not t.changelog]
        if not local:
            return False
        changelogged = [t for t in tables if t.changelog]
        if any((t.name, partition) in restored for t in changelogged):
            return True
        return any(st.checkpoint is None for st in local) and any(
            t.stores[partition].checkpoint is not None for t in changelogged)

    def _restore(self, opened: list[tuple[Table, int, PartitionStore]]) -> set[tuple[str, int]]:
        """Bring each store up to its changelog's end, reading only what is missing locally.
        Returns (table name, partition) of the stores that read anything or were wiped."""
        restored: set[tuple[str, int]] = set()
        opened = [(t, p, st) for t, p, st in opened if t.changelog]
        if not opened:
            return restored
        rc = make_consumer(self.settings, f"{self.app_id}-restore-{self.instance_id}", **{
            "isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False})
        try:
            targets: dict[tuple[str, int], tuple[Table, PartitionStore, int]] = {}
            assign = []
            for table, p, store in opened:
                topic = self.changelog(table)
                lo, hi = rc.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                plan = plan_restore(store.checkpoint, lo, hi)
                if plan.wipe_local:
                    log.warning("table %s[%d]: %s", table.name, p, plan.reason)
                    clear_store(store)
                    restored.add((table.name, p))
                if plan.start_offset is None:
                    continue
                restored.add((table.name, p))
                targets[(topic, p)] = (table, store, hi)
                start = plan.start_offset if plan.start_offset > 0 else OFFSET_BEGINNING
                assign.append(TopicPartition(topic, p, start))
                self.metrics.restore_remaining.labels(table.name, str(p)).set(hi - plan.start_offset)
            if not assign:
                return restored
            rc.assign(assign)
            log.info("restoring %s", [(tp.topic, tp.partition, tp.offset) for tp in assign])
            pending = set(targets)
            while pending and not self._stop.is_set():
                batch: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
                last: dict[tuple[str, int], int] = {}
                eof: set[tuple[str, int]] = set()
                for msg in rc.consume(5000, timeout=0.5):
                    key = (msg.topic(), msg.partition())
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            eof.add(key)
                        continue
                    batch.setdefault(key, []).append((msg.key(), msg.value()))
                    last[key] = msg.offset()
                for key, records in batch.items():
                    table, store, hi = targets[key]
                    store.apply_changelog(records, last[key])
                    self.metrics.restored.labels(table.name).inc(len(records))
                    self.metrics.restore_remaining.labels(table.name, str(key[1])).set(max(0, hi - last[key] - 1))
                for key in list(pending):
                    table, store, hi = targets[key]
                    position = rc.position([TopicPartition(*key)])[0].offset
                    if restore_done(position if position >= 0 else None, hi, eof=key in eof):
                        pending.discard(key)
                        self.metrics.restore_remaining.labels(table.name, str(key[1])).set(0)
            log.info("restore done")
        finally:
            rc.close()
        return restored

    # -- main loop ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create changelog topics, clients and the HTTP server; subscribe."""
        self._ensure_changelogs()
        self._make_clients()
        if self.options.http_port is not None:
            from app.runtime.http import HttpApi

            self.http = HttpApi(self.options.http_host, self.options.http_port, self.metrics.registry, self.health,
                                lock=self.lock)
            self.http.start()
        assert self.consumer is not None
        self.consumer.subscribe(list(self._source), on_assign=self._on_assign, on_revoke=self._on_revoke)

    def health(self) -> tuple[bool, dict[str, Any]]:
        assigned = self.engine.assigned()
        ok = self._started.is_set() and not self._stop.is_set() and not self._restoring
        return ok, {"restoring": self._restoring, "assigned": [f"{t}[{p}]" for t, p in assigned],
                    "instance": self.instance_id, "guarantee": self.options.guarantee.value}

    def run(self) -> None:
        """Process until stop() (or SIGTERM via the CLI); then finish the batch, commit and close."""
        self.start()
        assert self.consumer is not None
        consumer = self.consumer
        if self.options.tune_gc:
            # A worker keeps many long-lived objects (caches, indexes) and allocates many short-lived
            # ones per record: with default thresholds full collections run every few thousand
            # records, walk everything and free nothing (measured: 30-45% of worker time). Start-up
            # objects are frozen out of collection and full collections made ~100x rarer.
            gc.collect()
            gc.freeze()
            gc.set_threshold(700, 10, 1000)
        self._started.set()
        interval_s = self.options.commit_interval / 1000
        idle_timeout_s = self.options.poll_timeout_ms / 1000
        # Take what has arrived at once (latency); with nothing there, wait for the next record, but
        # briefly while a commit is still being written in slices between batches.
        slice_timeout_s = min(idle_timeout_s, 0.01)
        lag_due = 0.0
        try:
            while not self._stop.is_set():
                writing = bool(self._pending)
                msgs = take_available(consumer, self.options.max_batch,
                                      slice_timeout_s if writing else idle_timeout_s)
                with self.lock:
                    turn_started = time.monotonic()
                    if msgs:
                        self._process(msgs)
                    if self.engine.fire_wall_timers():
                        self._uncommitted = True
                        self._flush_engine()
                    now = time.monotonic()
                    if commit_due(since_commit_s=now - self._last_commit, interval_s=interval_s, got=bool(msgs),
                                  writing=writing, uncommitted=self._uncommitted):
                        self.commit(wait=False)
                    if self._pending:
                        budget_s = COMMIT_SLICE_S * (1 if msgs else 4) + (now - turn_started) / 4
                        self._produce_writes(budget_s)
                        self._finish_commits(block=False, budget_s=budget_s)
                if now >= lag_due:
                    self._update_lag()
                    lag_due = now + 5
        finally:
            self.shutdown()

    def _process(self, msgs: list[Message]) -> None:
        self._uncommitted = True
        decode = self.serde.decode_typed
        modes = self._decode_mode
        source = self._source
        groups: dict[tuple[str, int], list[InRecord]] = {}
        failed: dict[tuple[str, int], int] = {}  # last offset of records that failed to decode
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err.str())
                continue
            topic = msg.topic()
            raw = msg.value()
            mode = modes[source[topic]]
            try:
                if mode == "avro":
                    type_name, value = decode(raw)
                elif mode == "json":
                    type_name, value = None, orjson.loads(raw) if raw is not None else None
                else:
                    type_name, value = None, raw
            except (DecodeError, orjson.JSONDecodeError) as exc:
                self._decode_failed(msg, exc)
                failed[(topic, msg.partition())] = msg.offset()
                continue
            k = msg.key()
            tp = (topic, msg.partition())
            group = groups.get(tp)
            if group is None:
                group = groups[tp] = []
            group.append(InRecord(k.decode(errors="replace") if k is not None else None, value, msg.offset(),
                                  msg.timestamp()[1], type_name, raw, k))
        for (topic, partition), records in groups.items():
            self.engine.process(source[topic], partition, records)
            self._offsets[(topic, partition)] = records[-1].offset + 1
        for tp, offset in failed.items():
            if offset + 1 > self._offsets.get(tp, -1):
                self._offsets[tp] = offset + 1
        self._flush_engine()

    def _decode_failed(self, msg: Message, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, DecodeError) else str(exc)
        agents = self.engine.by_topic.get(self._source[msg.topic()], [])
        dlq = agents[0].dlq_topic if agents else "events-dlq"
        log.warning("cannot decode %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        self._dead_letter(DeadLetter(self._source[msg.topic()], msg.partition(), msg.offset(), msg.key(),
                                     msg.value(), "(decode)", reason, dlq))

    def _dead_letter(self, d: DeadLetter) -> None:
        headers = [("vigil.agent", d.agent.encode()), ("vigil.error", d.error.encode()[:4000]),
                   ("vigil.topic", self.settings.topic(d.topic).encode()),
                   ("vigil.partition", str(d.partition).encode()),
                   ("vigil.offset", str(d.offset).encode())]
        self._produce(self.settings.topic(d.dlq_topic), d.value, d.key, headers=headers)
        self.metrics.dead_letters.labels(d.agent, "decode" if d.agent == "(decode)" else "agent").inc()

    def _flush_engine(self) -> None:
        """Hand the engine's outputs and dead letters to the producer."""
        enc = self.encoder
        for out in self.engine.take_outputs():
            headers = [(k, v.encode()) for k, v in out.headers.items()] if out.headers else None
            topic = self.settings.topic(out.topic)
            self._produce(topic, enc.value(out.value, out.schema), enc.key(out.key), headers=headers)
            self.metrics.events_out.labels(out.topic).inc()
        for d in self.engine.take_dead_letters():
            self._dead_letter(d)
        self.producer.poll(0)

    # -- commit ---------------------------------------------------------------------------------------
    def commit(self, *, wait: bool = True) -> None:
        """Make processed input, state and outputs durable together (see module docstring).
        wait=False (at-least-once): take the commit point, then encode and produce its writes in
        slices between batches (`_produce_writes`) and finish it once acknowledged."""
        started = time.monotonic()
        self._flush_engine()
        stores: list[_StoreWrites] = []
        for table, p, store in self.engine.stores():
            if store.has_pending:
                where = (self.changelog(table), p) if table.changelog else None
                stores.append(_StoreWrites(store, where, iter(store.take_pending_values().items())))
        # Local-only stores first: see _persist.
        stores.sort(key=lambda w: w.changelog is not None)
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
        point = _PendingCommit(self.deliveries.close_epoch(), offsets, stores, started)
        self._pending.append(point)
        self._last_commit = time.monotonic()
        self._uncommitted = False
        block = wait or self.eos or len(self._pending) > MAX_PENDING_COMMITS
        if block:
            self._produce_writes(None)  # under exactly-once: inside the transaction committed next
        if self.eos and self._in_txn:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
            self._in_txn = False
        if block:  # else the run loop finishes it, in slices
            self._finish_commits(block=True)

    def _produce_writes(self, budget_s: float | None) -> None:
        """Encode and produce the writes of pending commit points, oldest first (so a key's changelog
        records keep their order), for about `budget_s` (None: all)."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        for point in self._pending:
            if point.produced:
                continue
            callback = self.deliveries.changelog_callback(point.epoch)
            while not point.produced:
                writes = point.stores[point.next_store]
                store = writes.store
                while chunk := list(itertools.islice(writes.left, _SLICE_CHECK_EVERY)):
                    encoded = store.encode_writes(chunk)
                    writes.encoded += encoded
                    if writes.changelog is not None:
                        topic, partition = writes.changelog
                        for key, value in encoded:
                            self._produce(topic, value, key, partition=partition, callback=callback, epoch=point.epoch)
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                point.next_store += 1

    def _finish_commits(self, *, block: bool, budget_s: float | None = None) -> None:
        """Finish the commit points whose writes are all produced and acknowledged, oldest first:
        write the stores (local-only ones first), then commit the consumer offsets. block (every
        write produced, see commit): flush the producer first, so every pending point finishes.
        budget_s: stop writing stores after about this long (the next call goes on)."""
        if block:
            left = self.producer.flush(60)
            if left:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{left} records not acknowledged"))
        else:
            self.producer.poll(0)
        deadline = None if block or budget_s is None else time.monotonic() + budget_s
        while self._pending:
            point = self._pending[0]
            if point.changelog_offsets is None:  # not acknowledged yet when last looked at
                if not point.produced or not self.deliveries.acknowledged(point.epoch):
                    return
                if self.deliveries.errors:
                    errors = self.deliveries.errors[:5]
                    self.deliveries.errors.clear()
                    raise RuntimeError(f"produce failed, not committing: {'; '.join(errors)}")
                point.changelog_offsets = self.deliveries.release(point.epoch)
            if not self._persist(point, deadline):
                return
            self._pending.popleft()
            if not self.eos and point.offsets:
                self.consumer.commit(offsets=point.offsets, asynchronous=not block)
            self.commit_count += 1
            self.metrics.commits.inc()
            self.metrics.commit_seconds.observe(time.monotonic() - point.started)
            self._export_stats()

    @staticmethod
    def _persist(point: _PendingCommit, deadline: float | None) -> bool:
        """Write a commit point's stores, in slices of _PERSIST_CHUNK until `deadline`; True when done.

        Local-only stores first (they sort first): after a crash between the two, the changelogged
        stores are behind their changelogs, so the next assignment restores them and rebuilds the
        local-only ones."""
        assert point.changelog_offsets is not None
        while point.next_persist < len(point.stores):
            writes = point.stores[point.next_persist]
            while len(writes.encoded) - writes.written > _PERSIST_CHUNK:
                writes.store.write_ahead(writes.encoded[writes.written:writes.written + _PERSIST_CHUNK])
                writes.written += _PERSIST_CHUNK
                if deadline is not None and time.monotonic() >= deadline:
                    return False  # at least one slice per call: progress even on a zero budget
            where = writes.changelog
            writes.store.persist(writes.encoded[writes.written:],
                                 LOCAL_ONLY_CHECKPOINT if where is None else point.changelog_offsets.get(where))
            point.next_persist += 1
            if deadline is not None and time.monotonic() >= deadline:
                return point.next_persist >= len(point.stores)
        return True

    def _export_stats(self) -> None:
        for name, st in self.engine.stats.items():
            self.metrics.events_in.labels(name).inc(st.events_in - self._exported_in.get(name, 0))
            self._exported_in[name] = st.events_in
        for a in self.engine.agents:
            for t in a.tables:
                if isinstance(t, WindowedTable):
                    self.metrics.late_dropped.labels(t.name).set(t.late_dropped)

    def _update_lag(self) -> None:
        if self.consumer is None:
            return
        for (topic, p), pos in list(self._offsets.items()):
            try:
                _, hi = self.consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
            except KafkaException:
                continue
            if hi >= 0:
                self.metrics.lag.labels(topic, str(p)).set(max(0, hi - pos))

    def stop(self) -> None:
        """Ask the loop to stop after the current batch (safe from signal handlers and threads)."""
        self._stop.set()

    def wait_started(self, timeout_s: float) -> bool:
        return self._started.wait(timeout_s)

    def shutdown(self) -> None:
        """Commit, leave the group (revoking partitions) and close everything."""
        try:
            if self.consumer is not None:
                self.commit()
                self.consumer.close()  # triggers on_revoke: commits and closes stores
                self.consumer = None
        finally:
            self.engine.close()
            if self.http is not None:
                self.http.stop()
            self.registry.close()
