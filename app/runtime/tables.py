"""Tables: keyed state declared by users, one PartitionStore per assigned partition.

    counts = Table("counts", default=0)

    @agent("events", tables=[counts])
    def count(event, ctx):
        counts[ctx.key] += 1

Inside an agent, a table reads and writes the partition of the event being processed (tables are
co-partitioned with the agent's source topic, whose key is the identity). Assign values back after
changing a mutable value (`d = t[k]; d["x"] = 1; t[k] = d`): in-place mutation is not tracked.

`cache_limit` is how many decoded values per partition stay in memory for reads (0: none, for a
write-mostly table such as an index: its writes then cost no cache upkeep).

`changelog=False` makes a local-only table: stored in RocksDB with the others, but with no
changelog topic, so a write costs no Kafka record. Use it for what can be derived from the agent's
other tables (an index): when a partition's changelogged tables had to be restored from Kafka, its
local-only tables are emptied and the agent's `@agent.on_rebuild` function refills them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from app.runtime.codecs import Codec, codec_for
from app.runtime.store import MISSING, PartitionStore

__all__ = ["Table", "TableNotActive"]


class TableNotActive(RuntimeError):
    """A table was used outside an agent call (no partition is active)."""


class Table:
    """Keyed state with a compacted changelog topic per table."""

    def __init__(self, name: str, *, default: Any = None, codec: str | Codec | None = "json",
                 cache_limit: int = 200_000, changelog: bool = True, help: str = "") -> None:
        if not name or "/" in name:
            raise ValueError(f"table name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self._default = default
        self._default_factory: Callable[[], Any] | None = default if callable(default) else None
        self.codec = codec_for(codec)
        self.cache_limit = cache_limit
        #: False: local only, rebuilt by the agent's on_rebuild after a restore (see the module docstring)
        self.changelog = changelog
        self.help = help
        self.stores: dict[int, PartitionStore] = {}
        self.active: PartitionStore | None = None

    def changelog_topic(self, app_id: str) -> str:
        return f"{app_id}-{self.name}-changelog"

    def _store(self) -> PartitionStore:
        store = self.active
        if store is None:
            raise TableNotActive(f"table {self.name!r} used outside an agent call; use table.partition(p) "
                                 f"or table.lookup(key) to read it from elsewhere")
        return store

    def _default_value(self) -> Any:
        return self._default_factory() if self._default_factory is not None else self._default

    # -- mapping API on the active partition --------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        store = self.active or self._store()
        value = store.get(key, MISSING)
        if value is MISSING:
            return self._default_factory() if self._default_factory is not None else self._default
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self._store().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        (self.active or self._store())[key] = value

    def update(self, writes: dict[str, Any]) -> None:
        """Write several keys of the active partition at once: `table[key] = value` for each, at a
        fraction of the cost (an index that writes a key per event writes its batch this way)."""
        (self.active or self._store()).update(writes)

    def __delitem__(self, key: str) -> None:
        del self._store()[key]

    def pop(self, key: str, default: Any = None) -> Any:
        return self._store().pop(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._store()

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        return self._store().items(prefix)

    # -- reads from outside agents (HTTP queries, tests) --------------------------------------------
    def partition(self, partition: int) -> PartitionStore:
        """The store of one locally assigned partition (KeyError if not assigned here)."""
        return self.stores[partition]

    def lookup(self, key: str, default: Any = None) -> Any:
        """Find a key in any locally assigned partition."""
        found = self.locate(key)
        return default if found is None else found[1]

    def locate(self, key: str) -> tuple[int, Any] | None:
        """(partition, value) of a key in the locally assigned partitions, or None."""
        for partition, store in list(self.stores.items()):
            value = store.get(key, MISSING)
            if value is not MISSING:
                return partition, value
        return None

    def all_items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Entries of every locally assigned partition."""
        for store in list(self.stores.values()):
            yield from store.items(prefix)

    def __repr__(self) -> str:
        return f"Table({self.name!r}, partitions={sorted(self.stores)})"
