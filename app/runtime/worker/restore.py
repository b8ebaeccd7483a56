"""Restoring a newly assigned partition's stores from their changelogs (the I/O; what to read is
decided by app.runtime.recovery.plan_restore, pure), and whether its local-only tables must be
rebuilt afterwards."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from app.bus.clients import make_consumer
from app.bus.faults import is_transient
from app.config import Settings
from app.retry import Backoff, retry_call
from app.runtime.engine import Engine
from app.runtime.metrics import WorkerMetrics
from app.runtime.recovery import plan_restore, restore_done
from app.runtime.store import PartitionStore, clear_store
from app.runtime.tables import Table

__all__ = ["Restorer", "needs_rebuild"]

log = logging.getLogger(__name__)

#: How long one watermark query may take before it is retried (Kafka may be restarting).
_WATERMARK_TIMEOUT_S = 10.0


class Restorer:
    """Brings stores up to their changelog's end with a consumer of its own (read_committed)."""

    def __init__(self, settings: Settings, *, group_id: str, changelog_of: Callable[[Table], str],
                 metrics: WorkerMetrics, stop: threading.Event) -> None:
        self.settings = settings
        self.group_id = group_id
        self.changelog_of = changelog_of
        self.metrics = metrics
        self.stop = stop

    def restore(self, opened: list[tuple[Table, int, PartitionStore]]) -> set[tuple[str, int]]:
        """Bring each store up to its changelog's end, reading only what is missing locally.
        Returns (table name, partition) of the stores that read anything or were wiped."""
        restored: set[tuple[str, int]] = set()
        opened = [(t, p, st) for t, p, st in opened if t.changelog]
        if not opened:
            return restored
        rc = make_consumer(self.settings, self.group_id, **{
            "isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False})
        try:
            targets: dict[tuple[str, int], tuple[Table, PartitionStore, int]] = {}
            assign = []
            for table, p, store in opened:
                topic = self.changelog_of(table)
                lo, hi = self._watermarks(rc, topic, p)
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
            self._read(rc, targets)
            log.info("restore done")
        finally:
            rc.close()
        return restored

    def _watermarks(self, rc: object, topic: str, partition: int) -> tuple[int, int]:
        """The changelog partition's low and high watermarks, retried while Kafka is unreachable."""
        def query() -> tuple[int, int]:
            lo, hi = rc.get_watermark_offsets(TopicPartition(topic, partition),  # type: ignore[attr-defined]
                                              timeout=_WATERMARK_TIMEOUT_S)
            return int(lo), int(hi)

        return retry_call(query, is_retriable=lambda exc: is_transient(exc) and not self.stop.is_set(),
                          deadline_s=None, backoff=Backoff(initial_s=0.2, max_s=5.0),
                          on_retry=lambda exc, delay_s: log.warning(
                              "changelog %s[%d]: cannot read its offsets (%s); retrying in %.1f s",
                              topic, partition, exc, delay_s))

    def _read(self, rc: object, targets: dict[tuple[str, int], tuple[Table, PartitionStore, int]]) -> None:
        pending = set(targets)
        while pending and not self.stop.is_set():
            batch: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
            last: dict[tuple[str, int], int] = {}
            eof: set[tuple[str, int]] = set()
            for msg in rc.consume(5000, timeout=0.5):  # type: ignore[attr-defined]
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
                try:
                    position = rc.position([TopicPartition(*key)])[0].offset  # type: ignore[attr-defined]
                except KafkaException:
                    continue
                if restore_done(position if position >= 0 else None, hi, eof=key in eof):
                    pending.discard(key)
                    self.metrics.restore_remaining.labels(table.name, str(key[1])).set(0)


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
