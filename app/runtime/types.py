"""The interfaces agents and built-in stages program against (implementations live beside this).

Pure logic (rules, status folding, absence) depends only on these Protocols, so it runs the same
in the stream runtime (RocksDB-backed tables, persisted timers) and in offline tools/tests (dicts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["KeyValueStore", "TimerService"]


class KeyValueStore(Protocol):
    """Keyed state for one partition of a table. Values must be serialisable by the table's codec
    (JSON-compatible for the JSON codec)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __getitem__(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def __contains__(self, key: object) -> bool: ...

    def items(self) -> Iterator[tuple[str, Any]]: ...


class TimerService(Protocol):
    """Per-key timers that survive restarts. Scheduling a key again replaces its previous timer.

    `kind="event"` timers fire when the partition's event-time watermark passes `at_ms`;
    `kind="wall"` timers fire when the wall clock passes `at_ms`, even with no traffic.
    """

    def schedule(self, key: str, at_ms: int, *, kind: str = "wall", payload: Any = None) -> None: ...

    def cancel(self, key: str) -> None: ...
