"""The Kafka worker: consume → decode → engine → produce, with changelogs, restore on assignment,
commits under at-least-once or exactly-once, and riding through registry and broker outages.

At-least-once: at each commit interval (and whenever the consumer has caught up), outputs and
changelog records are produced and the offsets processed so far noted; processing goes on while
Kafka acknowledges them. Once every record up to that point is acknowledged
(app.runtime.deliveries), the stores are written with their changelog checkpoint, then the noted
consumer offsets are committed (app.runtime.worker.commits). A rebalance, a checkpoint() and
shutdown wait for that instead (the producer is flushed).
Exactly-once: everything (outputs, changelogs, dead letters, consumer offsets) goes in one Kafka
transaction per commit interval; stores are written locally only after the commit succeeded, so
local state never holds anything a crash could roll back. The transactional.id is stable per
instance, so a restarted worker fences its previous incarnation and aborts its open transaction.
The commit at the interval runs in the background (app.runtime.worker.output): the loop goes on
taking records and firing timers; what they make waits in the engine until the commit has ended
(librdkafka takes no record while a commit runs) and goes into the next transaction, and the commit
point's stores are written once the worker has collected the commit. A failed commit is raised
there and rewinds as before. Commits that must be durable before the caller goes on (an agent's
checkpoint, a revoke, shutdown) wait for a background one first, then commit in the foreground.

Faults (see docs/runtime.md, "Outages"):
- The schema registry cannot answer (down, 5xx, timeout) while a record is decoded: the record is
  not bad, so its partition is held there (seek back, pause) and retried with backoff; other
  partitions go on. Only a definite "no such schema id" dead-letters a record.
- Kafka is unreachable: librdkafka keeps reconnecting and producers keep records; transactional
  calls and blocking commits are retried while the error is transient. Wall-clock timers of held
  partitions, and of all while the bus is down, wait (their events may be stuck, not absent).
- A failure that leaves uncommitted work unusable (a delivery that failed, an aborted transaction,
  a lost group membership, outputs that cannot be encoded now) rewinds: uncommitted state and
  commit points are dropped, the stores are restored, and the partitions resume at their committed
  offsets. Exactly-once stays exactly-once; at-least-once processes those records again.
- A client that fails for good (a fatal error; a static member fenced by another with its
  group.instance.id) is made anew before the next turn; nothing retries a call of a dead client.
- An error that stops the loop is logged (ERROR) and /healthz turns not ok ("failed").
- An error during shutdown is logged and never replaces the one that stopped the loop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from app.bus.clients import make_admin, make_consumer, take_available
from app.bus.faults import TxnAction, error_of, is_fatal, is_membership_lost, is_transient, txn_action
from app.config import Settings
from app.dead_letter_limit import DeadLetterLimiter, dead_letter_limits
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.registry.errors import RegistryError
from app.retry import Backoff
from app.runtime.agent import Agent
from app.runtime.backends import RocksBackend
from app.runtime.context import Forward, Output
from app.runtime.deliveries import DeliveryCallback
from app.runtime.engine import CheckpointFailed, DeadLetter, Engine, InRecord
from app.runtime.gctune import tune_for_streams
from app.runtime.http import HttpApi, Route
from app.runtime.metrics import WorkerMetrics
from app.runtime.outputs import OutputEncoder
from app.runtime.store import PartitionStore
from app.runtime.tables import Table
from app.runtime.windowed import WindowedTable
from app.runtime.worker.bus import BusState, KafkaRetry
from app.runtime.worker.commits import CommitPoints, DeliveryFailed, PendingCommit
from app.runtime.worker.fencing import Fencer
from app.runtime.worker.group import GroupView
from app.runtime.worker.holds import Holds
from app.runtime.worker.intake import Decoded, Intake
from app.runtime.worker.options import Guarantee, WorkerOptions, commit_due, poll_wait_s
from app.runtime.worker.output import RECONNECT_CONFIG, TRANSACTION_TIMEOUT_MS, OutputProducer
from app.runtime.worker.restore import Restorer, needs_rebuild
from app.runtime.worker.standby import Standbys
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec

__all__ = ["OutputsBlocked", "Worker", "encoded_prefix"]

log = logging.getLogger(__name__)

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
#: backlog comes a partition at a time. Measured on the 1M-event pipeline benchmark (20,000-record
#: turns): +13-17% events/s (alternating runs). It caps only what a fetch may return
#: (`queued.max.messages.kbytes` still bounds memory); a consumer that has caught up fetches what
#: arrived, as before.
FETCH_PARTITION_BYTES = 32 << 20
#: Per loop turn, how long a restore reads changelogs: between batches of the partitions that are
#: processed meanwhile, or longer when there is nothing else to do.
RESTORE_SLICE_S = 0.05
RESTORE_IDLE_SLICE_S = 0.25
#: While an agent call awaits (an orchestrator's turn runs its steps for seconds), how often the
#: outputs it sent so far are encoded: the flush after the call then has little left to encode
#: (encoding a turn's ~500 outputs at its end took 15-30 ms, while steps whose result had come waited).
ENCODE_AHEAD_EVERY_S = 0.05
#: Messages decoded before eager agents run on them (Worker._decode): ~2,000 decoded events stay in
#: a core's caches (about 1.5 KB each with their strings and maps).
EAGER_SLICE = 2000
#: Seek refusals that pass (a partition whose fetcher is starting after assignment or resume).
_SEEK_RETRY_CODES = frozenset({KafkaError._STATE})
#: While Kafka is unreachable, how often the loop asks for metadata to notice it is back.
_BUS_PROBE_EVERY_S = 2.0
#: While no records arrive (and no transaction commits), how often the loop asks for metadata to
#: notice that Kafka is gone: an idle worker makes no call that could fail, and librdkafka's "all
#: brokers down" report is not always made (it needs every known broker down at one instant, between
#: reconnection attempts).
_BUS_IDLE_CHECK_S = 5.0
#: How long that request may take before Kafka counts as unreachable (generous: a loaded machine
#: must not look like an outage, which holds back wall-clock timers).
_BUS_IDLE_CHECK_TIMEOUT_S = 5.0
#: How long the request that looks for Kafka's return may take.
_BUS_PROBE_TIMEOUT_S = 0.5


def encoded_prefix(ahead: Sequence[tuple[Output | Forward, bytes | None]],
                   outputs: Sequence[Output | Forward]) -> bool:
    """Whether `ahead` (outputs and their encoded values) encodes the first outputs of `outputs`.
    The engine's list only grows at its end or is cut back (a call's rollback, a take), so its entry
    at the last index encoded is still the output encoded there exactly when nothing before it was
    cut."""
    n = len(ahead)
    return n <= len(outputs) and (n == 0 or outputs[n - 1] is ahead[-1][0])


class OutputsBlocked(Exception):
    """An output could not be encoded because the schema registry cannot answer now."""


class Worker:
    """Runs agents against Kafka until stopped.

    `routes` are served on its HTTP API (beside /healthz and /metrics), `collectors` are extra
    Prometheus registries it serves at /metrics (a stage's own counters)."""

    def __init__(self, settings: Settings, agents: list[Agent], options: WorkerOptions | None = None, *,
                 registry: RegistryClient | None = None, routes: dict[str, Route] | None = None,
                 collectors: Iterable[CollectorRegistry] = ()) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.eos = self.options.guarantee == Guarantee.EXACTLY_ONCE
        self.instance_id = self.options.instance_id or socket.gethostname()
        self.app_id = self.options.app_id
        #: the group.instance.id, and under exactly-once the transactional.id (see worker.fencing)
        self.member = f"{self.app_id}-{self.instance_id}"
        self.registry = registry or RegistryClient.from_settings(settings)
        self.serde = AvroSerde(self.registry)
        self.encoder = OutputEncoder(self.serde, self.registry)
        self.metrics = WorkerMetrics()
        self.routes = dict(routes or {})
        self.collectors = list(collectors)
        # the serde's codec counters (fallbacks to fastavro, codec bugs) on the worker's /metrics
        self.metrics.registry.register(self.serde.stats.collector())
        self.state_dir = Path(settings.state_dir) / self.app_id / self.instance_id
        self.engine = Engine(agents, backend_factory=self._backend,
                             clock=self.options.clock or (lambda: int(time.time() * 1000)), checkpoint=self.commit,
                             settings=settings)
        self._stop = threading.Event()
        self._source = {settings.topic(t): t for t in self.engine.topics}  # real name -> logical
        #: real names of the topics some eager agent reads (Worker._decode). Empty under exactly-once:
        #: a backlog's turn is committed between its partitions there (see _process), and such a
        #: transaction must not hold eager outputs of partitions whose offsets it does not commit;
        #: eager agents then run with the others
        self._eager_topics = frozenset() if self.eos else frozenset(
            settings.topic(a.topic) for a in self.engine.agents if a.eager)
        self.intake = Intake(self.serde, self.engine, self._source, self._dead_letter)
        self.commits = CommitPoints(changelog_of=self.changelog, produce_changelog=self._produce_changelog)
        self.bus = BusState()
        self.retry = KafkaRetry(self.bus, stopping=self._stop, max_backoff_s=self.options.max_retry_backoff_s,
                                on_retry=self.metrics.dependency_retries.labels("kafka").inc)
        self.restorer = Restorer(settings, group_id=f"{self.app_id}-restore-{self.instance_id}",
                                 changelog_of=self.changelog, metrics=self.metrics, retry=self.retry,
                                 on_damage=self._changelog_damaged)
        self.standbys: Standbys | None = None  # made in start() when options.standby_replicas > 0
        self.group: GroupView | None = None  # made in start() for standbys and exactly-once fencing
        self.fencer: Fencer | None = None  # made in start() under exactly-once
        #: the worker's partitions (real topic names), processing or restoring
        self._owned: set[tuple[str, int]] = set()
        #: changelogs found damaged since the start (/healthz lists them: their state may be incomplete)
        self.damaged: list[str] = []
        self.output = OutputProducer(settings, transactional_id=self.member if self.eos else None, bus=self.bus,
                                     retry=self.retry, metrics=self.metrics, commits=self.commits)
        self.holds = Holds(Backoff(initial_s=0.5, max_s=self.options.max_retry_backoff_s))
        #: dead letters written per (agent, stage) at most (settings.dlq_*); the rest are counted and summarised
        self.dead_letter_limit = DeadLetterLimiter(dead_letter_limits(settings))
        self.metrics.registry.register(self.dead_letter_limit.collector())
        #: next offset to commit per (real topic, partition): everything before it is processed
        self._offsets: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        #: when Kafka last answered a call that waits for it (a committed transaction): it is up then
        self._bus_answered_s = 0.0
        #: records processed or timers fired since the last commit point
        self._uncommitted = False
        self._shutting_down = False
        self._started = threading.Event()
        #: held while processing and committing; HTTP queries take it to read consistent tables
        self.lock = threading.RLock()
        #: commits done (tests and harnesses wait on it); events_in already exported per agent
        self.commit_count = 0
        #: times the worker went back to its last durable point (tests and /metrics)
        self.rewind_count = 0
        self._exported_in: dict[str, int] = {}
        #: whether the run loop ended with an exception (shutdown then commits nothing)
        self._failed = False
        #: the exception that stopped the loop, for /healthz
        self.failure: str | None = None
        self.http: HttpApi | None = None
        self.consumer: Consumer | None = None
        #: outputs of the agent call in progress encoded ahead (see _encode_ahead), oldest first
        self._ahead: list[tuple[Output | Forward, bytes | None]] = []
        #: what failed finishing a commit inside an agent call (see _finish_ended_commit): raised next
        self._collect_failure: Exception | None = None

    # -- setup ----------------------------------------------------------------------------------------
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
            md = self.retry(lambda: admin.list_topics(timeout=30), "read the topics' metadata", deadline_s=300)
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
        self.consumer = self._make_consumer()
        self.output.start()

    def _make_consumer(self) -> Consumer:
        iso = "read_committed" if self.eos else "read_uncommitted"
        return make_consumer(self.settings, self.app_id, **{
            "isolation.level": iso, "enable.partition.eof": False, "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 262144, "max.partition.fetch.bytes": FETCH_PARTITION_BYTES,
            "partition.assignment.strategy": "cooperative-sticky",
            "group.instance.id": self.member,
            "session.timeout.ms": self.options.session_timeout_ms,
            # the group tells the others of a dead member's expiry at their next heartbeat: every
            # second, not every 3 s (Kafka's default), shortens a failover by up to 2 s
            "heartbeat.interval.ms": max(500, min(1000, self.options.session_timeout_ms // 10)),
            "max.poll.interval.ms": 300000, "error_cb": self.bus.on_consumer_error, **RECONNECT_CONFIG,
        })

    def _subscribe(self) -> None:
        assert self.consumer is not None
        self.consumer.subscribe(list(self._source), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, *, partition: int = -1,
                 headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None) -> None:
        if self.output.committing:  # a dead letter of decoding: it goes into the next transaction
            self._collect_commit(block=True)
        self.output.produce(topic, value, key, partition=partition, headers=headers, timestamp_ms=timestamp_ms)

    def _produce_changelog(self, topic: str, value: bytes | None, key: bytes, partition: int,
                           callback: DeliveryCallback, epoch: int) -> None:
        self.output.produce(topic, value, key, partition=partition, callback=callback, epoch=epoch)

    # -- rebalance ------------------------------------------------------------------------------------
    # Cooperative (incremental) rebalancing: each callback gets only the partitions that move.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.fencer is not None:  # before the offsets and outputs they hold up are read
            self.fencer.on_assign(gained=bool(partitions))
        consumer.incremental_assign(partitions)
        if self.standbys is not None:  # warm copies kept here: their stores are opened as active now
            self.standbys.release([(tp.topic, tp.partition) for tp in partitions])
        self._owned.update((tp.topic, tp.partition) for tp in partitions)
        self.metrics.partitions_gained.inc(len(partitions))
        self._open_partitions(partitions)
        log.info("assigned %s", [(tp.topic, tp.partition) for tp in partitions])

    def _open_partitions(self, partitions: list[TopicPartition]) -> None:
        """Open the stores of partitions (on assignment and on a rewind); a partition whose stores
        need records from their changelogs is paused until `Restorer.step` has them."""
        waiting = []
        for tp in partitions:
            logical = self._source[tp.topic]
            opened = [(t, tp.partition, st) for t, st in self.engine.open_partition(logical, tp.partition)]
            restored = self.restorer.begin((tp.topic, tp.partition), opened)
            if restored is None:
                waiting.append(TopicPartition(tp.topic, tp.partition))
            else:
                self._activate(tp.topic, tp.partition, restored)
        if waiting:
            assert self.consumer is not None
            self.consumer.pause(waiting)
        self.metrics.assigned.set(len(self._owned))

    def _open_standby_stores(self, source: tuple[str, int]) -> list[tuple[Table, int, PartitionStore]]:
        """Stores for a standby copy of another worker's partition, where this worker keeps the
        partition's state when it owns it (not in the tables: queries do not see standbys)."""
        topic, partition = source
        return [(t, partition, PartitionStore(self._backend(t, partition), t.codec, cache_limit=0))
                for t in self.engine.tables_of(self._source[topic]) if t.changelog]

    def _activate(self, topic: str, partition: int, restored: set[tuple[str, int]]) -> None:
        """Start processing a partition whose stores are restored (rebuilding local-only tables)."""
        logical = self._source[topic]
        self.engine.activate(logical, partition)
        if needs_rebuild(self.engine, logical, partition, restored):
            log.info("rebuilding the local-only tables of %s[%d]", logical, partition)
            self.engine.rebuild(logical, partition)

    def _step_restores(self, budget_s: float) -> None:
        done = self.restorer.step(budget_s)
        if not done:
            return
        for (topic, partition), restored in done:
            self._activate(topic, partition, restored)
        assert self.consumer is not None
        self.consumer.resume([TopicPartition(t, p) for (t, p), _ in done])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not (self._shutting_down and self._failed):  # after a failure: nothing uncommitted is trusted
            try:
                self.commit()
            except (Exception, CheckpointFailed) as exc:  # the next owner starts at the last committed offsets
                log.warning("could not commit before giving up %d partition(s): %s; their uncommitted work is "
                            "dropped and processed again by their next owner", len(partitions), exc)
                self._drop_uncommitted_quietly()
        self._close_partitions(partitions)
        consumer.incremental_unassign(partitions)
        self.metrics.partitions_given_up.inc(len(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave these partitions away (the session expired, e.g. in a broker outage): their
        uncommitted work must not be committed; the consumer rejoins by itself."""
        log.warning("lost %d partition(s) (group membership expired): dropping their uncommitted work; "
                    "rejoining", len(partitions))
        self.metrics.rewinds.labels("membership lost").inc()
        self._drop_uncommitted()
        self._close_partitions(partitions)
        consumer.incremental_unassign(partitions)
        self.metrics.partitions_given_up.inc(len(partitions))
        others = self._assigned_tps()
        if others:  # their uncommitted work was dropped with the rest: go back to their committed point
            self._reopen(others)

    def _close_partitions(self, partitions: list[TopicPartition], *, keep_owned: bool = False) -> None:
        """Forget partitions (revoked, lost, or about to be reopened): their stores close, a restore
        in progress stops."""
        self.restorer.cancel([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            self.engine.close_partition(self._source[tp.topic], tp.partition)
            self._offsets.pop((tp.topic, tp.partition), None)
            if not keep_owned:
                self._owned.discard((tp.topic, tp.partition))
        self.holds.forget((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned.set(len(self._owned))

    def _assigned_tps(self) -> list[TopicPartition]:
        """Every partition assigned to this worker, processing or restoring."""
        return [TopicPartition(t, p) for t, p in sorted(self._owned)]

    # -- going back to the last durable point -----------------------------------------------------------
    def _drop_uncommitted(self) -> None:
        """Forget everything not yet durable: the open transaction, commit points, outputs."""
        if self.output.committing:  # committed or not, its point is dropped: a restore reads what it made
            self.output.abandon_commit()
        if self.output.in_txn:
            self.output.abort()
        self.commits.drop()
        self.engine.take_output_entries()
        self._ahead = []
        self._collect_failure = None
        self.engine.take_dead_letters()
        self._uncommitted = False

    def _rebuild_consumer(self, err: KafkaError) -> None:
        """The consumer is unusable (fenced as a static member, e.g. after a coordinator restart
        answered a retried join; or another fatal error): drop uncommitted work, close its
        partitions, and join again with a new consumer (the same instance id); assignment restores."""
        log.warning("the consumer is unusable (%s): dropping uncommitted work and joining the group again",
                    err.str())
        self.metrics.rewinds.labels("consumer made anew").inc()
        self._drop_uncommitted_quietly()
        self._close_partitions(self._assigned_tps())
        old, self.consumer = self.consumer, None
        if old is not None:
            try:
                old.close()
            except Exception as exc:  # closing a fenced consumer may fail; it is replaced either way
                log.debug("closing the old consumer: %s", exc)
        self.bus.consumer_fatal = None
        self.consumer = self._make_consumer()
        self._subscribe()

    def _rewind(self, reason: str) -> None:
        """Drop uncommitted work and resume every assigned partition at its last committed point."""
        log.warning("rewinding to the last committed point: %s", reason)
        self.rewind_count += 1
        self.metrics.rewinds.labels(reason.split(":")[0][:40]).inc()
        self._drop_uncommitted()
        self._reopen(self._assigned_tps())

    def _reopen(self, partitions: list[TopicPartition]) -> None:
        """Close these partitions' stores (dropping unwritten state), restore them, and seek the
        consumer to their committed offsets."""
        assert self.consumer is not None
        consumer = self.consumer
        self._close_partitions(partitions, keep_owned=True)
        self._open_partitions(partitions)
        committed = self.retry(lambda: consumer.committed(partitions, timeout=10), "read committed offsets")
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._seek(TopicPartition(tp.topic, tp.partition, offset))

    def _seek(self, tp: TopicPartition) -> None:
        """Seek an assigned partition (librdkafka refuses one whose fetcher is still starting: retry)."""
        consumer = self.consumer
        assert consumer is not None
        self.retry(lambda: consumer.seek(tp), f"seek {tp.topic}[{tp.partition}] to {tp.offset}",
                   also_codes=_SEEK_RETRY_CODES)

    # -- main loop ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create changelog topics, clients and the HTTP server; subscribe."""
        self._ensure_changelogs()
        self._make_clients()
        if self.options.standby_replicas > 0 or self.eos:
            self.group = GroupView(make_admin(self.settings), group_id=self.app_id, topics=self._source)
        if self.options.standby_replicas > 0:
            self.standbys = Standbys(me=self.member, replicas=self.options.standby_replicas,
                                     open_stores=self._open_standby_stores, restorer=self.restorer,
                                     metrics=self.metrics)
        if self.eos and self.group is not None:
            self.fencer = Fencer(self.settings, self.group, me=self.member, app_id=self.app_id,
                                 transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, metrics=self.metrics)
        if self.options.http_port is not None:
            self.http = HttpApi(self.options.http_host, self.options.http_port, self.metrics.registry, self.health,
                                lock=self.lock, routes=self.routes, collectors=self.collectors,
                                token=self.options.api_token, metrics_open=self.options.metrics_open,
                                ready=self.ready)
            self.http.start()
        self._subscribe()

    def problems(self) -> list[str]:
        """Why the worker is degraded (it goes on and recovers by itself), one line each."""
        out = [f"schema registry unavailable, partitions held: {line}" for line in self.holds.reasons()]
        bus = self.bus.problem()
        return out if bus is None else [*out, bus]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/healthz (liveness): ok (200) while the loop runs, restoring or not; "degraded" with the
        reasons when a dependency fails (still 200: the worker recovers by itself, a restart would not
        help)."""
        ok = self._started.is_set() and not self._stop.is_set() and self.failure is None
        problems = self.problems()
        if self.failure is not None:
            problems.append(f"the worker stopped on an error: {self.failure}")
        status = ("degraded" if problems else "ok") if ok else "failed" if self.failure is not None \
            else "stopped" if self._stop.is_set() else "starting"
        return ok, {"status": status, "problems": problems, **self._partition_report(),
                    "instance": self.instance_id, "guarantee": self.options.guarantee.value}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """/readyz (readiness): ok once every assigned partition's state is restored; while some
        restore, 503 naming them with their progress (the others are processed meanwhile)."""
        alive, _ = self.health()
        report = self._partition_report()
        return alive and not report["restoring"], report

    def _partition_report(self) -> dict[str, Any]:
        restoring = self.restorer.progress()
        return {"assigned": [f"{t}[{p}]" for t, p in sorted(self._owned)],
                "restoring": [r.to_dict() for r in restoring], "changelogs_damaged": list(self.damaged)}

    def _changelog_damaged(self, line: str) -> None:
        """A changelog lost records a table needed: said loudly, kept for /healthz."""
        log.error("changelog damaged: %s", line)
        self.damaged.append(line)
        del self.damaged[:-20]

    def run(self) -> None:
        """Process until stop() (or SIGTERM via the CLI); then finish the batch, commit and close."""
        try:
            self.start()
            self._run_loop()
        except BaseException as exc:
            self._failed = True
            if not isinstance(exc, KeyboardInterrupt):  # a thread's exception is not logged by itself
                self.failure = f"{type(exc).__name__}: {exc}"
                log.error("the worker stopped on an error: %s", self.failure, exc_info=exc)
            raise
        finally:
            self.shutdown()

    def _run_loop(self) -> None:
        assert self.consumer is not None
        if self.options.tune_gc:
            # see app.runtime.gctune: CPython's defaults cost a worker 30-45%
            tune_for_streams(self.options.gc_thresholds)
        self._started.set()
        self.engine.loop.call_soon(self._encode_ahead_every)
        interval_s = self.options.commit_interval / 1000
        idle_timeout_s = self.options.poll_timeout_ms / 1000
        # Take what has arrived at once (latency); with nothing there, wait for the next record, but
        # briefly while a commit is still being written in slices between batches.
        slice_timeout_s = min(idle_timeout_s, 0.01)
        lag_due = 0.0
        probe_due = 0.0
        idle_check_due = time.monotonic() + _BUS_IDLE_CHECK_S
        while not self._stop.is_set():
            if self.bus.consumer_fatal is not None:
                with self.lock:
                    self._rebuild_consumer(self.bus.consumer_fatal)
            if self.bus.producer_fatal is not None:
                with self.lock:
                    self.output.abandon_commit()
                    self.output.rebuild(self.bus.producer_fatal)
                    self._rewind("the producer failed for good and was made anew")
            writing = bool(self.commits)
            if self.holds.held:
                self._resume_due_holds()
            if self.standbys is not None and self.group is not None:
                described = self.group.tick()
                if described is not None:
                    self.standbys.update(described, self._owned)
            restoring = self.restorer.active
            wait_s = 0.0 if restoring else slice_timeout_s if writing else idle_timeout_s
            if not self.bus.down:  # wall-clock timers fire between polls (not while the bus is down)
                wait_s = poll_wait_s(wait_s, now_ms=self._now_ms(),
                                     next_timer_ms=self.engine.next_wall_due_any(skip=self._held_logical()))
            # Read each turn: a recovery may have made the consumer anew (_rebuild_consumer).
            consumer = self.consumer
            assert consumer is not None
            try:
                msgs = take_available(consumer, self.options.max_batch, wait_s)
            except KafkaException as exc:  # raised in a rebalance callback (on_assign, on_lost)
                with self.lock:
                    self._recover(exc)
                continue
            with self.lock:
                try:
                    self._turn(msgs, writing, interval_s)
                    if restoring:  # between batches: the other partitions are not held up by it
                        self._step_restores(RESTORE_SLICE_S if msgs else RESTORE_IDLE_SLICE_S)
                    elif self.restorer.following:  # standbys: take what arrived
                        self._step_restores(0.0)
                except (DeliveryFailed, OutputsBlocked, KafkaException) as exc:
                    self._recover(exc)
                except CheckpointFailed as exc:  # an agent's ctx.checkpoint() could not commit
                    self._recover(exc.__cause__ if isinstance(exc.__cause__, Exception) else exc)
                now = time.monotonic()
            if now >= lag_due:
                self._update_lag()
                lag_due = now + 5
            if msgs:
                idle_check_due = now + _BUS_IDLE_CHECK_S
            # A committed transaction is Kafka answering too: a worker busy with timers (an orchestrator's
            # turns) is not idle, and the metadata request blocked the loop between two turns, while
            # the turn's steps in flight waited (0.5 s, load 3: the p99 of benchmarks/orchestration.py).
            idle_check_due = max(idle_check_due, self._bus_answered_s + _BUS_IDLE_CHECK_S)
            if self.bus.down and now >= probe_due:
                self._probe_bus(_BUS_PROBE_TIMEOUT_S)
                probe_due = now + _BUS_PROBE_EVERY_S
            elif not self.bus.down and now >= idle_check_due:
                self._probe_bus(_BUS_IDLE_CHECK_TIMEOUT_S)
                idle_check_due = time.monotonic() + _BUS_IDLE_CHECK_S
            self.metrics.degraded.set(1 if self.problems() else 0)

    def _turn(self, msgs: list[Message], writing: bool, interval_s: float) -> None:
        turn_started = time.monotonic()
        self._collect_commit(block=False)
        if (self.engine.outputs or self.engine.dead_letters) and not self.output.committing:
            self._flush_engine()  # what was held while the commit ran
        if msgs:
            if self.bus.down:
                self.bus.up()
            self._process(msgs)
        if not self.bus.down and self.engine.fire_wall_timers(skip=self._held_logical()):
            self._uncommitted = True
            self._flush_engine()
        now = time.monotonic()
        # While a commit runs in the background the next one waits (it is due again next turn).
        if not self.output.committing and commit_due(
                since_commit_s=now - self._last_commit, interval_s=interval_s, got=bool(msgs), writing=writing,
                uncommitted=self._uncommitted):
            self.commit(wait=False)
        if self.commits and not self.output.committing:  # else finished once collected
            budget_s = COMMIT_SLICE_S * (1 if msgs else 4) + (now - turn_started) / 4
            self.commits.produce_writes(budget_s)
            self._finish_commits(block=False, budget_s=budget_s)

    def _recover(self, exc: BaseException) -> None:
        """A failure in a turn: rewind, rebuild the producer, or (not transient) stop the worker."""
        if isinstance(exc, CheckpointFailed):
            raise exc
        # Every recovery below drops uncommitted work or stops: a commit in the background is not
        # waited for (a rewind restores what it committed from Kafka).
        self.output.abandon_commit()
        if isinstance(exc, OutputsBlocked):
            self._rewind(f"outputs cannot be encoded: {exc}")
            self._hold_all(str(exc.__cause__ or exc))
            return
        if isinstance(exc, DeliveryFailed):
            self._rewind(f"delivery failed: {exc}")
            return
        # A dead client fails every call (a seek answers _STATE, a commit _FATAL): make it anew.
        if self.bus.consumer_fatal is not None:
            self._rebuild_consumer(self.bus.consumer_fatal)
            return
        if self.bus.producer_fatal is not None:
            self.output.rebuild(self.bus.producer_fatal)
            self._rewind("the producer failed for good and was made anew")
            return
        err = error_of(exc)
        if err is None:
            raise exc
        if err.code() == KafkaError.FENCED_INSTANCE_ID:
            self._rebuild_consumer(err)
            return
        if self.eos:
            action = txn_action(err)
            if action == TxnAction.REBUILD:
                self.output.rebuild(err)
                self._rewind(f"transaction failed: {err.str()}")
                return
            if action == TxnAction.ABORT or is_transient(exc):
                self._rewind(f"transaction failed: {err.str()}")
                return
        elif is_transient(exc) or is_membership_lost(err):
            self._rewind(f"Kafka error: {err.str()}")
            return
        raise exc

    def _decode(self, msgs: list[Message]) -> Decoded:
        """The turn's messages decoded; eager agents (Agent.eager) run on each slice as it is decoded."""
        if not self._eager_topics:
            return self.intake.decode(msgs)
        return self.intake.decode_in_slices(msgs, self._eager_topics, self._run_eager, EAGER_SLICE)

    def _run_eager(self, topic: str, partition: int, records: list[InRecord]) -> None:
        self.engine.process(self._source[topic], partition, records, eager=True)

    def _process(self, msgs: list[Message]) -> None:
        self._uncommitted = True
        decoded = self._decode(msgs)
        # eager agents have already run (and their outputs of every partition are in the engine)
        eager = False if self._eager_topics else None
        for err in decoded.errors:
            if is_fatal(err):  # code _FATAL, fatal() unset: see app.bus.faults.FATAL_CODES
                self.bus.consumer_failed(err)  # the loop makes a new consumer before the next turn
            log.warning("consumer error: %s", err.str())
        groups = list(decoded.groups.items())
        for i, ((topic, partition), records) in enumerate(groups):
            self.engine.process(self._source[topic], partition, records, eager=eager)
            self._offsets[(topic, partition)] = records[-1].offset + 1
            if self.holds.retrying:
                self.holds.passed((topic, partition))
            if self.eos and i + 1 < len(groups) and not self.output.committing and commit_due(
                    since_commit_s=time.monotonic() - self._last_commit, interval_s=self.options.commit_interval / 1000,
                    got=True, writing=False, uncommitted=True):
                # A turn of a backlog (50,000 records: seconds) would make its outputs visible only
                # at its end: commit between its partitions instead. A partition's keys are its own,
                # so this folds no fewer updates per key. (benchmarks/failover.py, with the 1-s
                # heartbeat and the restore's 50-ms fetches: the partitions of a SIGKILLed worker
                # output again 5 s after its session expired, 10.7 s before the three.)
                self.commit(wait=False)
            else:
                # Each partition's outputs go to the producer as soon as its batch is done (under
                # at-least-once they are visible at once): a status change of a backlog turn's first
                # partition waited for all of them.
                self._flush_engine()
        for tp, offset in decoded.failed.items():
            if offset + 1 > self._offsets.get(tp, -1):
                self._offsets[tp] = offset + 1
            if self.holds.retrying:
                self.holds.passed(tp)
        for tp, (offset, exc) in decoded.stopped.items():
            self._hold(tp, offset, f"{exc}")
        self._flush_engine()

    # -- holds (registry outages) -----------------------------------------------------------------------
    def _hold(self, tp: tuple[str, int], offset: int, reason: str) -> None:
        """Keep the partition at `offset` and pause it until its retry time."""
        assert self.consumer is not None
        hold = self.holds.hold(tp, offset, reason, time.monotonic())
        self.metrics.dependency_retries.labels("schema registry").inc()
        log.warning("%s[%d]@%d held back: %s; retrying in %.1f s", tp[0], tp[1], offset, reason,
                    hold.retry_at_s - time.monotonic())
        part = TopicPartition(tp[0], tp[1], offset)
        self.consumer.pause([part])
        self._seek(part)
        self.metrics.held_partitions.set(len(self.holds.held))

    def _hold_all(self, reason: str) -> None:
        """Hold every assigned partition at its committed point (after a rewind)."""
        assert self.consumer is not None
        assigned = self._assigned_tps()
        committed = self.retry(lambda: self.consumer.committed(assigned, timeout=10),  # type: ignore[union-attr]
                               "read committed offsets")
        for tp in committed:
            self._hold((tp.topic, tp.partition), tp.offset if tp.offset >= 0 else OFFSET_BEGINNING, reason)

    def _resume_due_holds(self) -> None:
        assert self.consumer is not None
        due = self.holds.due(time.monotonic())
        if due:
            self.consumer.resume([TopicPartition(t, p) for t, p in due])
            self.metrics.held_partitions.set(len(self.holds.held))

    def _held_logical(self) -> set[tuple[str, int]]:
        """Partitions whose wall-clock timers wait: their events may be stuck behind a hold."""
        if not self.holds:
            return set()
        return {(self._source[t], p) for t, p in [*self.holds.held, *self.holds.retrying]}

    def _probe_bus(self, timeout_s: float) -> None:
        """A metadata request: Kafka is back when it answers, unreachable when it does not."""
        assert self.consumer is not None
        try:
            self.consumer.list_topics(next(iter(self._source)), timeout=timeout_s)
        except KafkaException as exc:
            self.bus.unreachable(f"a metadata request got no answer within {timeout_s:g} s ({exc})")
            return
        self.bus.up()

    # -- outputs --------------------------------------------------------------------------------------
    def _dead_letter(self, d: DeadLetter) -> None:
        stage = "decode" if d.agent == "(decode)" else "agent"
        # Only undecodable records are rate-limited: a record an agent failed on may be valid input
        # meeting a bug, and must stay in the dead-letter topic to be replayed once it is fixed.
        if stage == "decode" and not self.dead_letter_limit.admit(d.agent, stage, self._now_ms(),
                                                                   topic=d.dlq_topic):
            return  # counted; _flush_engine writes the summary
        headers = [("vigil.agent", d.agent.encode()), ("vigil.error", d.error.encode()[:4000]),
                   ("vigil.topic", self.settings.topic(d.topic).encode()),
                   ("vigil.partition", str(d.partition).encode()),
                   ("vigil.offset", str(d.offset).encode()),
                   # which consumer group gave up on it: with forwarders (their own group on the same
                   # events) an undecodable record is dead-lettered by each group that reads it
                   ("vigil.group", self.app_id.encode())]
        self._produce(self.settings.topic(d.dlq_topic), d.value, d.key, headers=headers)
        self.metrics.dead_letters.labels(d.agent, stage).inc()

    def _now_ms(self) -> int:
        return self.options.clock() if self.options.clock is not None else int(time.time() * 1000)

    def _encode_ahead_every(self) -> None:
        """On the engine's loop, every ENCODE_AHEAD_EVERY_S while it runs (inside agent calls)."""
        self._encode_ahead()
        self._finish_ended_commit()
        self.engine.loop.call_later(ENCODE_AHEAD_EVERY_S, self._encode_ahead_every)

    def _finish_ended_commit(self) -> None:
        """While an agent call awaits: collect a background commit that has committed, writing its
        stores now rather than at the end of the call (18 ms of an orchestrator's turn boundary at
        load 3). Safe inside the call: the stores write the commit's snapshot of older writes, which
        reads find the same before and after, and the call's own writes stay in its overlay. A commit
        that failed is left to the next turn, which recovers; so is an error finishing this one."""
        if not self.output.commit_succeeded:
            return
        try:
            self._collect_commit(block=True)
        except Exception as exc:
            self._collect_failure = exc

    def _encode_ahead(self) -> None:
        """Encode the outputs sent since the last look (kept in `_ahead` for `_flush_engine`). A call
        that rolled back removed its outputs from the end of the engine's list: what was encoded
        for them is dropped. An output that cannot be encoded now is left to the flush, which says
        why."""
        outputs, ahead = self.engine.outputs, self._ahead
        if not encoded_prefix(ahead, outputs):
            ahead.clear()
        for out in outputs[len(ahead):]:
            if isinstance(out, Forward):  # produced as consumed: nothing to encode
                ahead.append((out, None))
                continue
            try:
                value = self.encoder.value(out.value, out.schema)
            except Exception:
                return
            ahead.append((out, value))

    def _flush_engine(self) -> None:
        """Hand the engine's outputs and dead letters to the producer. An output whose schema the
        registry cannot give now raises OutputsBlocked (the caller rewinds: the outputs of
        uncommitted work are dropped with it and made again). While a transaction commits in the
        background they wait in the engine (librdkafka takes no record meanwhile): the loop goes on,
        and they go into the next transaction."""
        if self.output.committing:
            if not self.output.commit_ended:
                return
            self._collect_commit(block=True)
        enc = self.encoder
        sent: dict[str, int] = {}  # per topic, counted once per flush (a labels() lookup per record costs)
        outputs = self.engine.take_output_entries()
        ahead, self._ahead = self._ahead, []
        if not encoded_prefix(ahead, outputs):
            ahead = []
        for i, out in enumerate(outputs):
            if isinstance(out, Forward):  # consumed records copied unchanged: produced as they are
                self.output.produce_forward(self.settings.topic(out.topic), out.records)
                sent[out.topic] = sent.get(out.topic, 0) + len(out.records)
                continue
            headers = out.headers
            if headers is not None and not isinstance(headers, list):
                headers = [(k, v.encode()) for k, v in headers.items()] if headers else None
            topic = self.settings.topic(out.topic)
            try:
                value = ahead[i][1] if i < len(ahead) else enc.value(out.value, out.schema)
            except RegistryError as exc:
                if exc.is_not_found() and not exc.is_retriable():
                    raise
                raise OutputsBlocked(f"{out.topic}: {exc}") from exc
            self._produce(topic, value, enc.key(out.key), headers=headers, timestamp_ms=out.timestamp_ms)
            sent[out.topic] = sent.get(out.topic, 0) + 1
        for logical, n in sent.items():
            self.metrics.events_out.labels(logical).inc(n)
        for d in self.engine.take_dead_letters():
            self._dead_letter(d)
        for summary in self.dead_letter_limit.due(self._now_ms(), everything=self._shutting_down):
            self._produce(self.settings.topic(summary.topic), summary.value(), summary.source.encode(),
                          headers=summary.kafka_headers())
        self.output.poll()

    # -- commit ---------------------------------------------------------------------------------------
    def commit(self, *, wait: bool = True) -> None:
        """Make processed input, state and outputs durable together (see module docstring).
        wait=False: take the commit point, then (at-least-once) encode and produce its writes in
        slices between batches and finish it once acknowledged, or (exactly-once) commit the
        transaction in the background and finish the point once collected (`_collect_commit`)."""
        self._collect_commit(block=True)  # one transaction at a time, in order
        self._flush_engine()
        point = self.commits.take(self.engine.stores(), self._offsets)
        self._last_commit = time.monotonic()
        self._uncommitted = False
        block = wait or self.eos or len(self.commits) > MAX_PENDING_COMMITS
        if block:
            self.commits.produce_writes(None)  # under exactly-once: inside the transaction committed next
        if self.output.in_txn:
            consumer = self.consumer
            assert consumer is not None
            offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
            if not wait:
                self.output.begin_commit(point.epoch, offsets, consumer.consumer_group_metadata)
                return
            self.output.commit_transaction(point.epoch, offsets, consumer.consumer_group_metadata)
            self._bus_answered_s = time.monotonic()
        if block:  # else the run loop finishes it, in slices
            # Offsets are committed synchronously only when asked to wait (revoke, shutdown): a
            # backlog of commit points is finished with asynchronous offset commits, since a sync
            # commit can block inside librdkafka for as long as the group coordinator is away.
            self._finish_commits(block=True, sync_offsets=wait)

    def _collect_commit(self, *, block: bool) -> None:
        """Take the outcome of the transaction committing in the background: once committed, finish
        its commit point (write the stores); a failure is raised as the commit raised it (the
        caller's recovery rewinds). block=False: only when it has ended."""
        failure, self._collect_failure = self._collect_failure, None
        if failure is not None:
            raise failure
        if not self.output.committing or (not block and not self.output.commit_ended):
            return
        self.output.end_commit()
        self._bus_answered_s = time.monotonic()
        self._finish_commits(block=True, sync_offsets=False)

    def _finish_commits(self, *, block: bool, budget_s: float | None = None, sync_offsets: bool = True) -> None:
        if block:
            self.output.flush_all()
        else:
            self.output.poll()

        def commit_offsets(offsets: list[tuple[str, int, int]], blocking: bool) -> None:
            self._commit_offsets(offsets, blocking and sync_offsets)

        self.commits.finish(block=block, budget_s=budget_s, commit_offsets=commit_offsets,
                            on_finished=self._commit_finished)

    def _commit_offsets(self, offsets: list[tuple[str, int, int]], block: bool) -> None:
        """At-least-once: commit consumer offsets. A failed commit loses nothing (the next one covers
        these offsets, or the records are processed again), so it is retried only when blocking."""
        if self.eos:
            return  # committed with the transaction
        if self.bus.consumer_fatal is not None:
            return  # a dead consumer commits nothing: the loop makes a new one, which rewinds
        consumer = self.consumer
        assert consumer is not None
        tps = [TopicPartition(t, p, o) for t, p, o in offsets]
        try:
            if not block:
                consumer.commit(offsets=tps, asynchronous=True)
                return
            self.retry(lambda: consumer.commit(offsets=tps, asynchronous=False), "commit offsets")
        except KafkaException as exc:
            err = error_of(exc)
            if err is not None and is_fatal(err):
                self.bus.consumer_failed(err)
            elif not block:
                raise
            log.warning("offsets not committed (%s): their records will be processed again", exc)

    def _commit_finished(self, point: PendingCommit) -> None:
        self.commit_count += 1
        self.metrics.commits.inc()
        self.metrics.commit_seconds.observe(time.monotonic() - point.started)
        self._export_stats()

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
        """Commit (unless the loop failed), leave the group (revoking partitions) and close
        everything. An error here is logged: it must not hide the one that stopped the loop."""
        self._shutting_down = True
        self._stop.set()
        failed = self._failed
        try:
            if self.consumer is not None:
                if not failed:
                    try:
                        self.commit()
                    except Exception as exc:
                        log.error("final commit failed (%s): uncommitted records will be processed again", exc)
                        self._failed = True
                        self._drop_uncommitted_quietly()
                else:
                    self._drop_uncommitted_quietly()
                self.consumer.close()  # triggers on_revoke: commits (unless failed) and closes stores
                self.consumer = None
        except Exception:
            if not failed:
                raise
            log.exception("error while shutting down after a failure (the failure is raised)")
        finally:
            self.restorer.close()
            self.engine.close()
            if self.http is not None:
                self.http.stop()
            self.output.close()
            self.registry.close()

    def _drop_uncommitted_quietly(self) -> None:
        try:
            self._drop_uncommitted()
        except Exception as exc:
            log.warning("could not abort the open transaction on shutdown: %s", exc)
