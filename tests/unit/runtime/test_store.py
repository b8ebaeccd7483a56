"""PartitionStore between take_pending and persist (a commit awaiting Kafka's acknowledgement): the
writes stay readable and scannable and are never evicted, and persists apply in take order."""

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
