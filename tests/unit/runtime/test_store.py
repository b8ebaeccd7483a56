"""PartitionStore: agent-call transactions, reads without a cache, and the writes between
take_pending and persist (a commit awaiting Kafka's acknowledgement): they stay readable and
scannable through eviction, and persists apply in take order."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from app.runtime.backends import MemoryBackend, RocksBackend
from app.runtime.codecs import JsonCodec
from app.runtime.store import CHECKPOINT_KEY, RESTORE_WRITE_RECORDS, PartitionStore


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


class _RecordingBackend(MemoryBackend):
    """Keeps every write it was given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[tuple[bytes, bytes | None]]] = []

    def write(self, puts: Iterable[tuple[bytes, bytes | None]], *, wal: bool = True) -> None:
        self.writes.append(list(puts))
        super().write(self.writes[-1], wal=wal)


def test_restored_records__written_in_slices_in_order_with_the_checkpoint_last() -> None:
    """A large changelog batch reaches the backend in slices of RESTORE_WRITE_RECORDS: a key
    changed in two slices ends with its later value, a tombstone deletes, and only the last slice
    carries the checkpoint (a crash between slices leaves the store ahead of it, never behind)."""
    backend = _RecordingBackend()
    store = PartitionStore(backend, JsonCodec())
    n = RESTORE_WRITE_RECORDS * 2 + 7
    records: list[tuple[bytes, bytes | None]] = [(f"k{i}".encode(), str(i).encode()) for i in range(n)]
    records[RESTORE_WRITE_RECORDS + 1] = (b"k0", None)  # a tombstone of a key of the first slice
    records[-1] = (b"k1", b"99")  # a key of the first slice, again
    store.apply_changelog(records, 41)
    assert [len(w) for w in backend.writes] == [RESTORE_WRITE_RECORDS, RESTORE_WRITE_RECORDS, 7 + 1]
    assert [any(k == CHECKPOINT_KEY for k, _ in w) for w in backend.writes] == [False, False, True]
    assert store.checkpoint == 41 and store.get("k0") is None and store.get("k1") == 99
    assert store.get(f"k{n - 2}") == n - 2 and len(list(store.items())) == n - 3


def test_restored_records__a_crash_loses_them_and_every_later_write_never_a_write_before_them(
        tmp_path: Path) -> None:
    """From its first changelog record on, a store writes without RocksDB's log: a crash leaves it
    at a checkpoint it had before (behind its changelog: the next restore reads the rest again),
    never with later writes replayed from the log on top of restored records it lost."""
    store = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    store.persist([(b"a", b"1")], 4)  # a commit before any restore: written with the log
    store.apply_changelog([(b"b", b"2"), (b"c", b"3")], 9)
    store.write_ahead([(b"d", b"4")])
    store.persist([(b"d", b"4"), (b"e", b"5")], 10)  # a commit after the restore: without the log too
    crashed = _crash_image(store, tmp_path, "crashed")
    assert (crashed.checkpoint, crashed.get("a"), crashed.get("b"), crashed.get("e")) == (4, 1, None, None)
    crashed.close()
    store.close()
    reopened = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    image = _crash_image(reopened, tmp_path, "closed")
    assert (image.checkpoint, image.get("c"), image.get("e")) == (10, 3, 5)
    image.close()
    reopened.close()


def test_restored_records__closing_the_store_makes_them_durable(tmp_path: Path) -> None:
    """A standby's store is closed before the partition is opened as active here."""
    store = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    store.apply_changelog([(b"b", b"2")], 3)
    store.close()
    reopened = PartitionStore(RocksBackend(tmp_path / "store"), JsonCodec())
    image = _crash_image(reopened, tmp_path, "image")
    assert (image.checkpoint, image.get("b")) == (3, 2)
    image.close()
    reopened.close()


def test_deleted_keys__leave_no_marker_in_the_cache_once_persisted() -> None:
    """Expired state frees its memory: a persisted delete drops the key from the cache; a key
    written again meanwhile keeps its new value."""
    store = PartitionStore(MemoryBackend(), JsonCodec())
    store.update({"gone": 1, "back": 2})
    store.persist(store.take_pending(), 1)
    del store["gone"]
    del store["back"]
    deletes = store.take_pending()
    store["back"] = 3  # re-created while the delete is in flight
    store.persist(deletes, 2)
    assert "gone" not in store._cache
    assert (store.get("gone"), store.get("back")) == (None, 3)
