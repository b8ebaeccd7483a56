"""PartitionStore: agent-call transactions, reads without a cache, and the writes between
take_pending and persist (a commit awaiting Kafka's acknowledgement): they stay readable and
scannable through eviction, and persists apply in take order."""

from __future__ import annotations

from app.runtime.backends import MemoryBackend
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
