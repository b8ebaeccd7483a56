"""Commit points: what the worker makes durable together, and the order it does it in.

A commit point is taken between batches: the engine's stores hand over their pending writes, the
deliveries epoch closes, and the consumer offsets processed so far are noted. Its writes are then
encoded and produced to the changelogs (in slices between batches under at-least-once, all at once
under exactly-once, inside the transaction). Once every record of its epoch is acknowledged, the
stores are written with their changelog checkpoints (local-only stores first) and the offsets are
committed. A delivery failure is raised as DeliveryFailed: the point must not finish, and the
worker rewinds to its last durable point instead.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.runtime.deliveries import DeliveryCallback, DeliveryTracker
from app.runtime.store import PartitionStore
from app.runtime.tables import Table

__all__ = ["LOCAL_ONLY_CHECKPOINT", "CommitPoints", "DeliveryFailed", "PendingCommit", "StoreWrites"]

#: The checkpoint a local-only store records when written (it has no changelog offset): it tells
#: "written here" from "never written", see app.runtime.worker.restore.needs_rebuild.
LOCAL_ONLY_CHECKPOINT = 0
#: Writes encoded between two looks at the clock.
_SLICE_CHECK_EVERY = 64
#: Writes per backend write when a commit point's stores are persisted in slices.
_PERSIST_CHUNK = 2000

#: produce(topic, value, key, partition, callback, epoch): one changelog record of an ended epoch
ProduceChangelog = Callable[[str, bytes | None, bytes, int, DeliveryCallback, int], None]
#: (topic, partition, offset) triples to commit, and whether to block until committed
CommitOffsets = Callable[[list[tuple[str, int, int]], bool], None]


class DeliveryFailed(Exception):
    """Kafka refused or timed out records of a commit point: it must not finish."""


@dataclass
class StoreWrites:
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
class PendingCommit:
    """A commit point: its writes are encoded and produced (maybe over several loop turns), then
    it is finished once every record of its epoch is acknowledged."""

    epoch: int
    #: consumer offsets to commit: (topic, partition, next offset)
    offsets: list[tuple[str, int, int]]
    stores: list[StoreWrites]
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


class CommitPoints:
    """The commit points taken and not finished yet, oldest first, and the deliveries they wait on."""

    def __init__(self, *, changelog_of: Callable[[Table], str], produce_changelog: ProduceChangelog) -> None:
        self._changelog_of = changelog_of
        self._produce_changelog = produce_changelog
        self.deliveries = DeliveryTracker()
        self._pending: deque[PendingCommit] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def take(self, stores: Iterable[tuple[Table, int, PartitionStore]],
             offsets: dict[tuple[str, int], int]) -> PendingCommit:
        """Take a commit point now: every store's pending writes, and the offsets processed so far."""
        writes: list[StoreWrites] = []
        for table, p, store in stores:
            if store.has_pending:
                where = (self._changelog_of(table), p) if table.changelog else None
                writes.append(StoreWrites(store, where, iter(store.take_pending_values().items())))
        # Local-only stores first: see _persist.
        writes.sort(key=lambda w: w.changelog is not None)
        point = PendingCommit(self.deliveries.close_epoch(), [(t, p, o) for (t, p), o in offsets.items()], writes,
                              time.monotonic())
        self._pending.append(point)
        return point

    def drop(self) -> None:
        """Forget every commit point and delivery count (the worker rewinds to its last durable point:
        the stores that held these writes are closed and restored)."""
        self._pending.clear()
        self.deliveries = DeliveryTracker()

    def produce_writes(self, budget_s: float | None) -> None:
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
                            self._produce_changelog(topic, value, key, partition, callback, point.epoch)
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                point.next_store += 1

    def finish(self, *, block: bool, budget_s: float | None, commit_offsets: CommitOffsets,
               on_finished: Callable[[PendingCommit], None]) -> None:
        """Finish the commit points whose writes are all produced and acknowledged, oldest first:
        write the stores (local-only ones first), then commit the consumer offsets (`commit_offsets`,
        blocking when `block`). The caller flushed the producer first when `block`.
        budget_s: stop writing stores after about this long (the next call goes on).
        Raises DeliveryFailed when a record of a point was not delivered."""
        deadline = None if block or budget_s is None else time.monotonic() + budget_s
        while self._pending:
            point = self._pending[0]
            if point.changelog_offsets is None:  # not acknowledged yet when last looked at
                if not point.produced or not self.deliveries.acknowledged(point.epoch):
                    return
                if self.deliveries.errors:
                    errors = self.deliveries.errors[:5]
                    self.deliveries.errors.clear()
                    raise DeliveryFailed(f"Kafka did not take every record of a commit: {'; '.join(errors)}")
                point.changelog_offsets = self.deliveries.release(point.epoch)
            if not self._persist(point, deadline):
                return
            self._pending.popleft()
            if point.offsets:
                commit_offsets(point.offsets, block)
            on_finished(point)

    @staticmethod
    def _persist(point: PendingCommit, deadline: float | None) -> bool:
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
