"""Test your agents in pytest without Kafka: feed records, move the clocks, inspect tables and
outputs. The same engine as the worker runs underneath (only the I/O is in memory).

    def test_counts():
        h = AgentHarness([count_agent], partitions=3)
        h.feed("events", {"subject": "web1", "name": "load", "time": 1000}, key="web1/load")
        assert h.table("counts").lookup("web1/load") == 1
        h.advance_wall_clock(60_000)          # fires wall-clock timers that are due
        assert h.outputs("alerts")[0].value["to_state"] == "EXPIRED"

`restart()` simulates a worker restart: pending writes are committed, stores closed, and a new
engine resumes from the same (in-memory) state, so tests can check persistence of tables/timers.
"""

from __future__ import annotations

import zlib
from typing import Any

from app.runtime.agent import Agent
from app.runtime.backends import MemoryBackend
from app.runtime.context import Output
from app.runtime.engine import DeadLetter, Engine, InRecord
from app.runtime.tables import Table

__all__ = ["AgentHarness", "find_table", "identity_key", "partition_for"]


def partition_for(key: str | bytes | None, partitions: int) -> int:
    """The partition librdkafka's default (consistent_random: CRC32) partitioner picks for a key."""
    if key is None or partitions == 1:
        return 0
    raw = key.encode() if isinstance(key, str) else key
    return zlib.crc32(raw) % partitions


def identity_key(value: Any, key: str | None = None) -> str | None:
    """The key a record is fed with: the given one, else 'subject/name' of an event dict."""
    if key is None and isinstance(value, dict) and "subject" in value and "name" in value:
        return f"{value['subject']}/{value['name']}"
    return key


def find_table(agents: list[Agent], name: str) -> Table:
    """A table (user or internal) of these agents by name."""
    for a in agents:
        for t in a.all_tables:
            if t.name == name:
                return t
    raise KeyError(f"no table named {name!r} in these agents")


class AgentHarness:
    """Drives agents in memory. Partition count applies to every source topic."""

    def __init__(self, agents: list[Agent], *, partitions: int = 1, wall_clock_ms: int = 0) -> None:
        self.agents = agents
        self.partitions = partitions
        self.wall_clock_ms = wall_clock_ms
        self._backends: dict[tuple[str, int], MemoryBackend] = {}
        self._outputs: list[Output] = []
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self.checkpoints = 0
        self._start()

    def _backend(self, table: Table, partition: int) -> MemoryBackend:
        return self._backends.setdefault((table.name, partition), MemoryBackend())

    def _start(self) -> None:
        self.engine = Engine(self.agents, backend_factory=self._backend, clock=lambda: self.wall_clock_ms,
                             checkpoint=self._checkpoint)
        for topic in self.engine.topics:
            for p in range(self.partitions):
                self.engine.open_partition(topic, p)
                self.engine.activate(topic, p)

    def _drain(self) -> None:
        self._outputs.extend(self.engine.take_outputs())
        self._dead.extend(self.engine.take_dead_letters())

    # -- input ---------------------------------------------------------------------------------------
    def feed(self, topic: str, value: Any, *, key: str | None = None, partition: int | None = None,
             timestamp_ms: int | None = None, type_name: str | None = "vigil.Event") -> None:
        """Process one record now (key defaults to 'subject/name' of an event dict)."""
        self.feed_many(topic, [value], key=key, partition=partition, timestamp_ms=timestamp_ms, type_name=type_name)

    def feed_many(self, topic: str, values: list[Any], *, key: str | None = None, partition: int | None = None,
                  timestamp_ms: int | None = None, type_name: str | None = "vigil.Event") -> None:
        """Process records as consumed batches (one batch per partition, order kept)."""
        batches: dict[int, list[InRecord]] = {}
        for value in values:
            k = identity_key(value, key)
            p = partition if partition is not None else partition_for(k, self.partitions)
            offset = self._offsets.get((topic, p), 0)
            self._offsets[(topic, p)] = offset + 1
            ts = timestamp_ms if timestamp_ms is not None else self.wall_clock_ms
            raw_value = repr(value).encode()
            batches.setdefault(p, []).append(InRecord(k, value, offset, ts, type_name, raw_value,
                                                      k.encode() if k is not None else None))
        for p, records in batches.items():
            self.engine.process(topic, p, records)
        self._drain()

    def advance_wall_clock(self, ms: int) -> int:
        """Move the wall clock forward and fire the wall-clock timers now due; returns how many fired."""
        self.wall_clock_ms += ms
        fired = self.engine.fire_wall_timers(self.wall_clock_ms)
        self._drain()
        return fired

    # -- inspection ----------------------------------------------------------------------------------
    def outputs(self, topic: str | None = None) -> list[Output]:
        return [o for o in self._outputs if topic is None or o.topic == topic]

    def clear_outputs(self) -> None:
        self._outputs.clear()

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def table(self, name: str) -> Table:
        return find_table(self.agents, name)

    def _checkpoint(self) -> None:
        self.checkpoints += 1
        self.commit()

    def commit(self) -> None:
        """Write pending state to the backends (what a worker commit does, minus Kafka)."""
        for _table, _p, store in self.engine.stores():
            store.persist(store.take_pending(), None)

    def restart(self) -> None:
        """Commit, close everything and start a fresh engine on the same state."""
        self.commit()
        self.engine.close()
        self._start()
