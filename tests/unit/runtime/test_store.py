"""PartitionStore: agent-call transactions, reads without a cache, and the writes between
take_pending and persist (a commit awaiting Kafka's acknowledgement): they stay readable and
scannable through eviction, and persists apply in take order."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.runtime.backends import MemoryBackend, RocksBackend
from app.runtime.codecs import JsonCodec
from app.runtime.store import PartitionStore


def test_in_flight_writes__read_scanned_and_kept_through_eviction() -> None:
    store = PartitionStore(MemoryBackend(), JsonCodec(), cache_limit=2)
    store["a"] = 1
    first = store.take_pending()
    store["b"] = 2
    del store["a"]
    second = store.take_pending()
    for i in range(10):  # reads of other keys overflow the cache: in-flight values must survive
        store.get(f"missing-{i}")
    assert store.get("b") == 2 and store.get("a") is None
    assert list(store.items()) == [("b", 2)]
    store.persist(first, 10)
    assert list(store.items()) == [("b", 2)]  # the later delete of "a" is still in flight
    store.persist(second, 11)
    assert list(store.items()) == [("b", 2)] and store.backend.get(b"a") is None
    assert store.checkpoint == 11


def test_no_cache__reads_find_pending_in_flight_and_persisted_values() -> None:
    """cache_limit=0 (a write-mostly index): nothing is cached, every read is still exact."""
    store = PartitionStore(MemoryBackend(), JsonCodec(), cache_limit=0)
    store.update({"a": 1, "b": 2})
    first = store.take_pending()
    store["a"] = 3
    assert (store.get("a"), store.get("b"), store.get("c")) == (3, 2, None)
    second = store.take_pending()
    store.persist(first, 1)
    assert (store.get("a"), store.get("b")) == (3, 2)  # "a": the newer in-flight value, not the persisted one
    store.persist(second, 2)
    assert (store.get("a"), store.get("b")) == (3, 2) and store._cache == {}


def test_transaction__writes_kept_on_end_dropped_on_rollback_and_read_inside() -> None:
    store = PartitionStore(MemoryBackend(), JsonCodec())
    store["a"] = 1
    store.begin()
    store.update({"a": 2, "b": 2})
    del store["a"]
    assert (store.get("a"), store.get("b")) == (None, 2)
    assert list(store.items()) == [("b", 2)]
    store.rollback()
    assert (store.get("a"), store.get("b")) == (1, None)
    store.begin()
    store["b"] = 3
    store.end()
    assert dict(store.items()) == {"a": 1, "b": 3} and store.has_pending


def _crash_image(store: PartitionStore, tmp_path: Path, name: str) -> PartitionStore:
    """What a crash would leave of a RocksDB store now: a copy of its files as they are on disk
    (what only sits in memory is not there), opened as a store."""
    assert isinstance(store.backend, RocksBackend)
    copy = tmp_path / name
    shutil.copytree(store.backend.path, copy)
    return PartitionStore(RocksBackend(copy), JsonCodec())


def test_restored_records__a_crash_loses_them_with_their_checkpoint_until_synced(tmp_path: Path) -> None:
    """apply_changelog writes without RocksDB's log: a crash before sync() leaves the store at its
    previous checkpoint (never ahead of it, so the next restore reads the records again); after
    sync() they and the checkpoint are on disk."""
    store = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    store.persist([(b"a", b"1")], 4)  # a commit: written with the log
    store.apply_changelog([(b"b", b"2"), (b"c", b"3")], 9)
    before = _crash_image(store, tmp_path, "before-sync")
    assert (before.checkpoint, before.get("a"), before.get("b")) == (4, 1, None)
    before.close()
    store.sync()
    after = _crash_image(store, tmp_path, "after-sync")
    assert (after.checkpoint, after.get("a"), after.get("b"), after.get("c")) == (9, 1, 2, 3)
    after.close()
    store.close()
    reopened = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    assert (reopened.checkpoint, reopened.get("c")) == (9, 3)
    reopened.close()


def test_restored_records__closing_the_store_makes_them_durable(tmp_path: Path) -> None:
    """A standby's store is closed (not synced) before the partition is opened as active here."""
    store = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    store.apply_changelog([(b"b", b"2")], 3)
    store.close()
    reopened = _crash_image(PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec()), tmp_path, "image")
    assert (reopened.checkpoint, reopened.get("b")) == (3, 2)
    reopened.close()
