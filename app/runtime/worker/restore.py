"""Restoring the stores of newly assigned partitions from their changelogs, without stopping the
world: the worker pauses a partition whose stores need records from their changelogs and calls
`step` every loop turn; the others go on processing meanwhile. What to read is decided by
app.runtime.recovery (pure); this module does the consumer I/O.

A changelog that lost records the store had not seen (compacted or truncated by retention past the
store's checkpoint, emptied) is restored from what remains on top of the local state, and reported
loudly; one that ends before the store's checkpoint (recreated) is read from its start into an
emptied store. A restore never waits for records that are not there: a partition is done at the
end it had when the restore began, or at the end of the partition, whichever comes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from app.bus.clients import make_consumer, take_available
from app.config import Settings
from app.runtime.engine import Engine
from app.runtime.gctune import gc_paused
from app.runtime.metrics import WorkerMetrics
from app.runtime.recovery import plan_restore, restore_done
from app.runtime.store import PartitionStore, clear_store
from app.runtime.tables import Table
from app.runtime.worker.bus import KafkaRetry

__all__ = ["RESTORE_FETCH_CONFIG", "RestoreProgress", "Restorer", "needs_rebuild", "split_by_partition"]

log = logging.getLogger(__name__)

#: How long one watermark query may take before it is retried (Kafka may be restarting).
_WATERMARK_TIMEOUT_S = 10.0
#: A topic or partition the broker's metadata does not list yet (just created).
_NOT_THERE_YET = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART})
#: Changelog records taken from the restore consumer at once.
_RESTORE_BATCH = 10_000
#: How the restore consumer fetches (benchmarks/failover.py's plain reader fetches the same way, so
#: that it compares like with like).
RESTORE_FETCH_CONFIG: dict[str, int] = {
    "max.partition.fetch.bytes": 16 << 20,
    # a broker answers a connection's requests in order: a watermark query (one per table partition
    # a restore plans) waited out the long poll of the fetch before it, 500 ms by default
    # (measured: 2 s to plan a takeover of 2 partitions of 2 tables)
    "fetch.wait.max.ms": 50,
    # librdkafka stops fetching once its queue holds queued.max.messages.kbytes (64 MiB) and looks
    # again only after this backoff, 1 s by default, although a restore applies those 64 MiB in a
    # fraction of that: a cold restore of 1 GB waited in consume() for ~70% of its time (py-spy)
    # and ran at 90-115 MB/s; with 10 ms, 180-250 MB/s (benchmarks/failover.py, same machine)
    "fetch.queue.backoff.ms": 10,
}

#: The value of a (key, value) changelog record.
_VALUE = itemgetter(1)

SourcePartition = tuple[str, int]
ChangelogPartition = tuple[str, int]


@dataclass
class _Target:
    """One store restoring from one changelog partition."""

    table: Table
    store: PartitionStore
    source: SourcePartition
    #: the changelog's end when the restore began: done once the consumer reaches it (None: a
    #: standby, which follows the changelog for as long as it is one)
    end_offset: int | None
    start_offset: int
    read: int = 0
    bytes_read: int = 0


@dataclass
class RestoreProgress:
    """How far the restore of one source partition is (for /healthz and /metrics)."""

    source: SourcePartition
    records_read: int
    records_left: int
    bytes_read: int
    started_s: float

    @property
    def rate_per_s(self) -> float:
        elapsed = time.monotonic() - self.started_s
        return self.records_read / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate_per_s
        return self.records_left / rate if rate > 0 else None

    def to_dict(self) -> dict[str, object]:
        eta = self.eta_s
        return {"partition": f"{self.source[0]}[{self.source[1]}]", "records_read": self.records_read,
                "records_left": self.records_left, "bytes_read": self.bytes_read,
                "records_per_s": round(self.rate_per_s), "eta_s": None if eta is None else round(eta, 1)}


@dataclass
class _Restoring:
    """A source partition whose stores restore."""

    targets: dict[ChangelogPartition, _Target]
    #: (table name, partition) of every store that read anything or was emptied
    restored: set[tuple[str, int]]
    started_s: float = field(default_factory=time.monotonic)


class Restorer:
    """Restores stores in slices between the worker's batches, with a consumer of its own
    (read_committed, assigned partition by partition)."""

    def __init__(self, settings: Settings, *, group_id: str, changelog_of: Callable[[Table], str],
                 metrics: WorkerMetrics, retry: KafkaRetry, on_damage: Callable[[str], None]) -> None:
        self.settings = settings
        self.group_id = group_id
        self.changelog_of = changelog_of
        self.metrics = metrics
        self.retry = retry
        #: told (a line for people) when a changelog turned out damaged
        self.on_damage = on_damage
        self._consumer: Consumer | None = None
        self._restoring: dict[SourcePartition, _Restoring] = {}
        #: standby copies of other workers' partitions: their targets, followed until released
        self._following: dict[SourcePartition, dict[ChangelogPartition, _Target]] = {}
        self._standby_stores: dict[SourcePartition, list[PartitionStore]] = {}
        self._by_changelog: dict[ChangelogPartition, _Target] = {}

    @property
    def active(self) -> bool:
        """Restores in progress (standbys followed do not count)."""
        return bool(self._restoring)

    @property
    def following(self) -> list[SourcePartition]:
        """Source partitions kept warm here as standbys."""
        return list(self._following)

    def restoring(self) -> list[SourcePartition]:
        return list(self._restoring)

    def begin(self, source: SourcePartition,
              opened: list[tuple[Table, int, PartitionStore]]) -> set[tuple[str, int]] | None:
        """Plan the restore of a newly opened source partition's stores. Returns the stores that
        changed (for the local-only rebuild decision) when nothing is to be read, so the partition
        can be processed at once; None when it must wait until `step` reports it done."""
        restored: set[tuple[str, int]] = set()
        targets = self._plan(source, opened, restored, standby=False)
        if not targets:
            return restored
        self._restoring[source] = _Restoring(targets, restored)
        self._assign(targets)
        log.info("restoring %s[%d]: %s", source[0], source[1],
                 ", ".join(f"{t}[{p}] from {target.start_offset}" for (t, p), target in targets.items()))
        return None

    def follow(self, source: SourcePartition, opened: list[tuple[Table, int, PartitionStore]]) -> None:
        """Keep a standby copy of another worker's partition warm: its stores (opened by the caller,
        at the paths this worker would use if it got the partition) follow their changelogs from
        their checkpoints until `release`."""
        targets = self._plan(source, opened, set(), standby=True)
        self._following[source] = targets
        self._standby_stores[source] = [store for _, _, store in opened]
        self._assign(targets)
        log.info("standby for %s[%d] (%d table(s))", source[0], source[1], len(targets))

    def release(self, sources: list[SourcePartition]) -> None:
        """Stop following standby partitions and close their stores (the partition was assigned
        here, or is no longer this worker's to keep warm)."""
        for source in sources:
            targets = self._following.pop(source, None)
            if targets is None:
                continue
            self._unassign(list(targets))
            for store in self._standby_stores.pop(source, []):
                store.close()

    def _plan(self, source: SourcePartition, opened: list[tuple[Table, int, PartitionStore]],
              restored: set[tuple[str, int]], *, standby: bool) -> dict[ChangelogPartition, _Target]:
        targets: dict[ChangelogPartition, _Target] = {}
        for table, p, store in opened:
            if not table.changelog:
                continue
            topic = self.changelog_of(table)
            lo, hi = self._watermarks(topic, p)
            plan = plan_restore(store.checkpoint, lo, hi)
            if plan.damaged and not standby:  # a standby's gap is reported if it is ever promoted
                self.on_damage(f"table {table.name}[{p}] (changelog {topic}[{p}]): {plan.reason}")
                self.metrics.changelog_damage.labels(table.name, str(p)).inc()
            elif plan.reason and not standby:
                log.info("table %s[%d]: %s", table.name, p, plan.reason)
            if plan.wipe_local:
                clear_store(store)
                restored.add((table.name, p))
            start = plan.start_offset
            if start is None and standby:
                start = hi  # up to date now: follow from the end
            if start is None:
                continue
            if not standby:
                restored.add((table.name, p))
                self.metrics.restore_remaining.labels(table.name, str(p)).set(hi - start)
            targets[(topic, p)] = _Target(table, store, source, None if standby else hi, start)
        return targets

    def _assign(self, targets: dict[ChangelogPartition, _Target]) -> None:
        self._by_changelog.update(targets)
        self._consumer_for_restores().incremental_assign(
            [TopicPartition(t, p, target.start_offset if target.start_offset > 0 else OFFSET_BEGINNING)
             for (t, p), target in targets.items()])

    def _unassign(self, keys: list[ChangelogPartition]) -> None:
        for key in keys:
            self._by_changelog.pop(key, None)
        if self._consumer is not None and keys:
            self._consumer.incremental_unassign([TopicPartition(t, p) for t, p in keys])

    def cancel(self, sources: list[SourcePartition]) -> None:
        """Stop restoring source partitions (revoked before their restore finished)."""
        for source in sources:
            entry = self._restoring.pop(source, None)
            if entry is not None:
                self._unassign(list(entry.targets))

    def step(self, budget_s: float) -> list[tuple[SourcePartition, set[tuple[str, int]]]]:
        """Read and apply changelog records for about `budget_s`; returns the source partitions whose
        stores are now restored (with the stores that changed)."""
        consumer = self._consumer
        if consumer is None or not self._by_changelog:
            return []
        deadline = time.monotonic() + budget_s
        eof: set[ChangelogPartition] = set()
        while True:
            with gc_paused():  # a batch's messages and records hold no cycles (freed in the block)
                took = self._take(consumer, min(0.05, budget_s), eof)
            if not took or time.monotonic() >= deadline:
                break
        return self._finished(consumer, eof)

    def _take(self, consumer: Consumer, wait_s: float, eof: set[ChangelogPartition]) -> bool:
        """Read one batch and write each changelog partition's records to its store; whether there
        were any messages."""
        msgs = take_available(consumer, _RESTORE_BATCH, wait_s)
        for key, (records, last_offset) in split_by_partition(msgs, eof).items():
            target = self._by_changelog.get(key)
            if target is None:  # cancelled meanwhile
                continue
            target.store.apply_changelog(records, last_offset)
            target.read += len(records)
            # at C speed; tombstones (None) count nothing
            target.bytes_read += sum(map(len, filter(None, map(_VALUE, records))))
            if target.end_offset is None:
                self.metrics.standby_records.labels(target.table.name).inc(len(records))
                continue
            self.metrics.restored.labels(target.table.name).inc(len(records))
            self.metrics.restore_remaining.labels(target.table.name, str(key[1])).set(
                max(0, target.end_offset - last_offset - 1))
        return bool(msgs)

    def _finished(self, consumer: Consumer, eof: set[ChangelogPartition]) -> list[tuple[SourcePartition,
                                                                                         set[tuple[str, int]]]]:
        done_targets: list[ChangelogPartition] = []
        for key, target in self._by_changelog.items():
            if target.end_offset is None:  # a standby never ends
                continue
            try:
                position = consumer.position([TopicPartition(*key)])[0].offset
            except KafkaException:
                continue
            end = target.end_offset
            if restore_done(position if position >= 0 else None, end, eof=key in eof):
                done_targets.append(key)
        finished = []
        for key in done_targets:
            target = self._by_changelog.pop(key)
            self.metrics.restore_remaining.labels(target.table.name, str(key[1])).set(0)
            entry = self._restoring[target.source]
            del entry.targets[key]
            consumer.incremental_unassign([TopicPartition(*key)])
            if not entry.targets:
                del self._restoring[target.source]
                finished.append((target.source, entry.restored))
                log.info("restored %s[%d] in %.1f s", target.source[0], target.source[1],
                         time.monotonic() - entry.started_s)
        return finished

    def progress(self) -> list[RestoreProgress]:
        """Per source partition still restoring: records read and left, bytes, rate."""
        out = []
        for source, entry in self._restoring.items():
            read = sum(t.read for t in entry.targets.values())
            left = sum(max(0, (t.end_offset or 0) - t.start_offset - t.read) for t in entry.targets.values())
            out.append(RestoreProgress(source, read, left, sum(t.bytes_read for t in entry.targets.values()),
                                       entry.started_s))
        return out

    def close(self) -> None:
        self.release(list(self._following))
        self._restoring.clear()
        self._by_changelog.clear()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- internals -------------------------------------------------------------------------------
    def _consumer_for_restores(self) -> Consumer:
        if self._consumer is None:
            self._consumer = make_consumer(self.settings, self.group_id, **{
                "isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", **RESTORE_FETCH_CONFIG})
        return self._consumer

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """The changelog partition's low and high watermarks, retried while Kafka is unreachable."""
        consumer = self._consumer_for_restores()

        def query() -> tuple[int, int]:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=_WATERMARK_TIMEOUT_S)
            return int(lo), int(hi)

        # a changelog created a moment ago may not be in the broker's metadata yet: wait for it
        return self.retry(query, f"read the offsets of changelog {topic}[{partition}]",
                          also_codes=_NOT_THERE_YET)


def split_by_partition(msgs: list[Message], eof: set[ChangelogPartition]) -> dict[ChangelogPartition, tuple[
        list[tuple[bytes, bytes | None]], int]]:
    """A consumer batch's changelog records as (key, value) pairs per changelog partition, in order,
    with the partition's last offset; partitions at their end are added to `eof`.

    The per-record path of a restore (py-spy of a 1 GB cold restore: this loop took ~20% of the
    worker): records come in runs of one partition (a fetched batch each), so the partition's list
    is looked up once per run, and the last offset read once per partition."""
    runs: dict[ChangelogPartition, list[tuple[bytes, bytes | None]]] = {}
    last: dict[ChangelogPartition, Message] = {}
    records: list[tuple[bytes, bytes | None]] = []
    topic, partition = "", -1  # no partition's
    previous: Message | None = None  # the last record of the current run
    for msg in msgs:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                eof.add((msg.topic(), msg.partition()))
            else:
                log.warning("restore consumer: %s", err.str())
            continue
        p, t = msg.partition(), msg.topic()
        if p != partition or t != topic:
            if previous is not None:
                last[(topic, partition)] = previous
            topic, partition = t, p
            records = runs.setdefault((t, p), [])
        records.append((msg.key(), msg.value()))
        previous = msg
    if previous is not None:
        last[(topic, partition)] = previous
    return {key: (records, last[key].offset()) for key, records in runs.items()}


def needs_rebuild(engine: Engine, topic: str, partition: int, restored: set[tuple[str, int]]) -> bool:
    """Local-only tables are derived from the changelogged ones: rebuild them when those were
    restored from Kafka, or when they were never written here but the others hold state."""
    tables = engine.tables_of(topic)
    local = [t.stores[partition] for t in tables if not t.changelog]
    if not local:
        return False
    changelogged = [t for t in tables if t.changelog]
    if any((t.name, partition) in restored for t in changelogged):
        return True
    return any(st.checkpoint is None for st in local) and any(
        t.stores[partition].checkpoint is not None for t in changelogged)
