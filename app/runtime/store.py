"""PartitionStore: the mapping API over a byte backend, with a decoded-value cache, dirty tracking
for changelog batching, agent-call transactions (an overlay of the call's writes, merged when the
call succeeds and dropped when it fails), and the changelog offset checkpoint stored atomically with
the data (so restore reads only what is missing locally).

Writes stay in memory until the worker commits: then the dirty keys are encoded once, sent to the
changelog (one record per key, however often it changed) and written to the backend in one batch.
Between the two (`take_pending` ... `persist`) the writes are "in flight": the worker goes on
processing while Kafka acknowledges them, and reads and scans still see them (from the cache, or
where they wait when the cache dropped them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from app.runtime.backends import StoreBackend
from app.runtime.codecs import Codec

__all__ = ["CHECKPOINT_KEY", "MISSING", "RESTORE_WRITE_RECORDS", "PartitionStore", "clear_store"]

#: Reserved key holding the last changelog offset reflected in the backend.
CHECKPOINT_KEY = b"\x00\x00vigil:changelog-offset"
#: Changelog records written to the backend at once by a restore (see apply_changelog).
RESTORE_WRITE_RECORDS = 100


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_DELETED: Any = _Missing()


class PartitionStore:
    """State of one table for one partition."""

    def __init__(self, backend: StoreBackend, codec: Codec, *, cache_limit: int = 200_000) -> None:
        self.backend = backend
        self.codec = codec
        self.cache_limit = cache_limit
        self._cache: dict[str, Any] = {}
        self._dirty: dict[str, Any] = {}
        #: writes handed to take_pending and not yet persisted, oldest first
        self._inflight: list[dict[str, Any]] = []
        #: the writes of the agent call in progress (begin ... end/rollback), None outside calls
        self._txn: dict[str, Any] | None = None
        raw = backend.get(CHECKPOINT_KEY)
        self.checkpoint: int | None = int(raw) if raw is not None else None
        #: whether writes go through the backend's write-ahead log: not once changelog records were
        #: applied (see apply_changelog)
        self._wal = True

    # -- mapping API ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        txn = self._txn
        value = txn.get(key, MISSING) if txn else MISSING
        if value is MISSING:
            value = self._cache.get(key, MISSING)
            if value is MISSING:
                value = self._unwritten(key)
                if value is MISSING:
                    raw = self.backend.get(key.encode())
                    value = _DELETED if raw is None else self.codec.decode(raw)
                    if self.cache_limit:
                        if len(self._cache) >= self.cache_limit:
                            self._evict()
                        self._cache[key] = value
        return default if value is _DELETED else value

    def _unwritten(self, key: str) -> Any:
        """The newest value of `key` that the backend does not have yet (pending or in flight), or
        MISSING. The cache usually has it too, but need not: eviction and `cache_limit=0` drop it."""
        value = self._dirty.get(key, MISSING)
        if value is MISSING:
            for writes in reversed(self._inflight):
                value = writes.get(key, MISSING)
                if value is not MISSING:
                    break
        return value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, MISSING) is not MISSING

    def __setitem__(self, key: str, value: Any) -> None:
        txn = self._txn
        if txn is not None:
            txn[key] = value
        else:
            self._dirty[key] = value
            if self.cache_limit:
                self._cache[key] = value

    def update(self, writes: dict[str, Any]) -> None:
        """Write several keys at once (as `self[key] = value` for each, in one C-level call)."""
        txn = self._txn
        if txn is not None:
            txn.update(writes)
        else:
            self._keep_all(writes)

    def _keep_all(self, writes: dict[str, Any]) -> None:
        self._dirty.update(writes)
        if self.cache_limit:
            self._cache.update(writes)

    def __delitem__(self, key: str) -> None:
        self[key] = _DELETED

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            return default
        del self[key]
        return value

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Live entries (committed and pending), sorted by key, optionally under a key prefix."""
        pending: dict[str, Any] = {}
        for writes in (*self._inflight, self._dirty, self._txn or {}):
            pending.update((k, v) for k, v in writes.items() if k.startswith(prefix))
        merged: dict[str, Any] = {}
        for raw_key, raw_value in self.backend.iterate(prefix.encode()):
            if raw_key.startswith(b"\x00\x00"):
                continue
            key = raw_key.decode()
            merged[key] = pending.pop(key) if key in pending else self.codec.decode(raw_value)
        merged.update(pending)
        for key in sorted(merged):
            if merged[key] is not _DELETED:
                yield key, merged[key]

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (k for k, _ in self.items(prefix))

    def _evict(self) -> None:
        # Keep the newer half (dicts keep insertion order, a cheap approximation of recency); the
        # rest is found among the unwritten writes or re-read from the backend on demand.
        keep = self.cache_limit // 2
        self._cache = dict(list(self._cache.items())[-keep:]) if keep else {}

    # -- agent-call transactions ------------------------------------------------------------------
    # A call's writes go to an overlay instead of a journal of what they replaced: a write costs one
    # dict store (an index table writes a key per event), and ending the call merges the overlay
    # at C speed.
    def begin(self) -> None:
        """Start an agent call: its writes stay apart until `end` (kept) or `rollback` (dropped)."""
        self.end()
        self._txn = {}

    def end(self) -> None:
        """The agent call succeeded: its writes become pending (for the next commit)."""
        txn, self._txn = self._txn, None
        if txn:
            self._keep_all(txn)

    def rollback(self) -> None:
        """Drop every write since begin()."""
        self._txn = None

    # -- commit and restore -----------------------------------------------------------------------
    @property
    def has_pending(self) -> bool:
        return bool(self._dirty)

    def take_pending(self) -> list[tuple[bytes, bytes | None]]:
        """Encode and hand over every pending write (for the changelog), clearing the pending set.
        Call `persist` with the same list once the changelog write is durable (calls to `persist`
        follow the order of the calls to `take_pending`)."""
        return self.encode_writes(self.take_pending_values().items())

    def take_pending_values(self) -> dict[str, Any]:
        """Hand over every pending write unencoded, clearing the pending set: a snapshot, since
        stored values never change. Encode it with `encode_writes` (all at once or in slices), then
        `persist` the encoded writes as with take_pending."""
        dirty, self._dirty = self._dirty, {}
        self._inflight.append(dirty)
        return dirty

    def encode_writes(self, writes: Iterable[tuple[str, Any]]) -> list[tuple[bytes, bytes | None]]:
        """(key, value) writes as backend/changelog bytes (value None: a delete)."""
        encode = self.codec.encode
        return [(k.encode(), None if v is _DELETED else encode(v)) for k, v in writes]

    def persist(self, writes: list[tuple[bytes, bytes | None]], checkpoint: int | None) -> None:
        """Write the oldest writes taken by `take_pending` to the backend, atomically with the
        changelog offset they correspond to."""
        if self._inflight:
            self._inflight.pop(0)
        self._write(writes, checkpoint)
        self._forget_deleted(writes)

    def _forget_deleted(self, writes: list[tuple[bytes, bytes | None]]) -> None:
        """Drop the cache's markers of keys whose deletion is now in the backend: state that expired
        must free its memory, not leave a marker per key forgotten (a key written again since keeps
        its new value)."""
        cache = self._cache
        for key, value in writes:
            if value is None:
                name = key.decode()
                if cache.get(name) is _DELETED:
                    del cache[name]

    def write_ahead(self, writes: list[tuple[bytes, bytes | None]]) -> None:
        """Write part of the oldest writes taken by `take_pending` to the backend early, without a
        checkpoint (to spread a large commit over several calls); `persist` the rest. Safe after a
        crash: the backend is then ahead of its checkpoint, and a restore re-applies those keys from
        the changelog."""
        self.backend.write(writes, wal=self._wal)

    def _write(self, writes: list[tuple[bytes, bytes | None]], checkpoint: int | None) -> None:
        if checkpoint is None:
            self.backend.write(writes, wal=self._wal)
        else:
            self.backend.write(chain(writes, ((CHECKPOINT_KEY, str(checkpoint).encode()),)), wal=self._wal)
            self.checkpoint = checkpoint
        if len(self._cache) > self.cache_limit:  # write-mostly tables never miss on read: evict here too
            self._evict()

    def apply_changelog(self, records: list[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Restore: apply changelog records (value None = tombstone) up to `last_offset`.

        From the first of them on, this store writes without RocksDB's write-ahead log until it is
        closed (which makes everything durable), as Kafka Streams' stores do: a cold restore of
        1 GB wrote it twice (measured on benchmarks/failover.py, about a third of the restore's
        time). A crash then loses the newest writes, each with the checkpoint written with it, so
        the store is behind its changelog and the next restore reads them again. The log cannot
        come back before the store is closed: writes replayed from it after a crash would land on
        a state that lost the unlogged ones before them (syncing instead, a flush per restored
        partition, stalled a restore for seconds)."""
        if self._cache:  # empty in a cold restore and in a standby (cache_limit 0): skip the decoding
            for key, _ in records:
                self._cache.pop(key.decode(errors="replace"), None)
        self._wal = False
        # Written in slices, the checkpoint with the last: RocksDB (rocksdict) spends more per record
        # on a larger write batch; a cold restore of 1 GB of 1 KB records (~830 per partition and
        # consumer batch) took ~1.75 us of the restoring thread's CPU per record in one write per
        # batch, ~1.45 us in slices of 32-128 records, ~1.6 us in 256 (benchmarks/failover.py).
        # Safe: a crash can only lose a suffix of the unlogged writes, so at worst the store is
        # ahead of its checkpoint, and a restore re-applies those records.
        tail = 0
        for tail in range(RESTORE_WRITE_RECORDS, len(records), RESTORE_WRITE_RECORDS):
            self.backend.write(records[tail - RESTORE_WRITE_RECORDS:tail], wal=False)
        self._write(records[tail:], last_offset)

    def close(self) -> None:
        self.backend.close()


def clear_store(store: PartitionStore) -> None:
    """Delete everything (data and checkpoint) from a store, e.g. before a full rebuild."""
    store.backend.write([(k, None) for k, _ in store.backend.iterate(b"")])
    store._cache.clear()
    store._dirty.clear()
    store._inflight.clear()
    store.checkpoint = None
