"""State of a backtest: in memory, fresh, and only what decides outputs.

Tables that decide what agents send (identities, rules state, timers, watermarks) live in
MemoryBackend dicts, written the way a worker commits (`commit`: encoded once per key, however
often it changed). Tables that only answer queries (the archive's id and find indexes, retained
closed windows) would grow with every event of a long range and change nothing a backtest reports:
their writes are dropped (`DiscardBackend`), never encoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from app.runtime.backends import MemoryBackend, StoreBackend
from app.runtime.engine import Engine
from app.runtime.tables import Table

__all__ = ["DiscardBackend", "StatePolicy"]


class DiscardBackend:
    """A store backend that keeps nothing (for query-only tables)."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def write(self, puts: Iterable[tuple[bytes, bytes | None]], *, wal: bool = True) -> None:
        pass

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return iter(())

    def close(self) -> None:
        pass


class StatePolicy:
    """Which tables a backtest keeps (`backend` is an Engine's backend_factory) and how it commits."""

    def __init__(self, discarded: Iterable[Table] = ()) -> None:
        self.discarded = set(discarded)
        for table in self.discarded:
            table.cache_limit = 0  # tables built for this backtest: keep nothing of them for reads either

    def backend(self, table: Table, partition: int) -> StoreBackend:
        """A backend for one table partition: nothing for discarded tables, else a dict."""
        if table in self.discarded:
            return DiscardBackend()
        return MemoryBackend()

    def commit(self, engines: Iterable[Engine]) -> None:
        """Write every pending change to the backends (dropped for discarded tables), as a worker's
        commit does, so memory holds each key once instead of every write since the start."""
        for engine in engines:
            for table, _partition, store in engine.stores():
                if not store.has_pending:
                    continue
                if table in self.discarded:
                    store.take_pending_values()
                    store.persist([], None)
                else:
                    store.persist(store.take_pending(), None)
