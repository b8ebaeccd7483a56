"""What an agent gets besides the event: where it came from, tables, timers, and send()."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.runtime.timers import PartitionTimers

__all__ = ["AgentContext", "ConsumedRecord", "Forward", "Output", "each_output"]


@dataclass(slots=True)
class Output:
    """A record an agent sends; encoded by the I/O layer (Avro when `schema` names a record type
    or the value is a Vigil model, bytes as is, otherwise JSON). Headers are text (a dict) or, to
    forward a consumed record's headers unchanged, its (name, bytes) list; `timestamp_ms` None:
    the producer's clock (as Kafka does)."""

    topic: str
    key: str | bytes | None
    value: Any
    schema: str | None = None
    headers: dict[str, str] | list[tuple[str, bytes]] | None = None
    timestamp_ms: int | None = None


class ConsumedRecord(Protocol):
    """What forwarding needs of a consumed record (the engine's InRecord has it)."""

    @property
    def raw_key(self) -> bytes | None: ...
    @property
    def raw_value(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    @property
    def timestamp_ms(self) -> int: ...


@dataclass(slots=True)
class Forward:
    """Consumed records an agent forwards unchanged to `topic` (raw key, raw value, headers and
    timestamp as consumed): one entry for many copies, so that the worker produces them without
    an Output object and an encoding step per record (the routes stage's copies)."""

    topic: str
    records: Sequence[ConsumedRecord]

    def outputs(self) -> list[Output]:
        """The copies as Outputs (for harnesses and tools that look at outputs one by one)."""
        return [Output(self.topic, r.raw_key, r.raw_value, None, r.headers, r.timestamp_ms) for r in self.records]


def each_output(outputs: Iterable[Output | Forward]) -> Iterator[Output]:
    """Every record of `outputs`, a Forward's copies one by one."""
    for out in outputs:
        if type(out) is Forward:
            yield from out.outputs()
        else:
            assert isinstance(out, Output)
            yield out


class AgentContext:
    """Per agent-partition context, updated in place for each event (cheap on the hot path)."""

    __slots__ = ("_checkpoint", "_clock", "_outputs", "agent_name", "event_times", "key", "offset", "partition",
                 "raw_value", "records", "settings", "tables", "timers", "timestamp", "topic", "type_name", "watermark")

    def __init__(self, agent_name: str, topic: str, partition: int, tables: dict[str, Any],
                 timers: PartitionTimers, outputs: list[Output | Forward], clock: Any) -> None:
        self.agent_name = agent_name
        self.topic = topic
        self.partition = partition
        self.tables = tables
        self.timers = timers
        self._outputs = outputs
        self._clock = clock
        self.key: str | None = None
        self.offset = -1
        self.timestamp = 0
        self.type_name: str | None = None
        #: the record's value as consumed (e.g. Confluent-framed Avro), to forward it without re-encoding
        self.raw_value: bytes | None = None
        #: batch agents: the records of the batch (key, offset, raw_value, type_name, ... per record)
        self.records: list[Any] = []
        #: batch agents: the event time of each record of the batch (as the agent's timestamp function gives it)
        self.event_times: list[int] = []
        self.watermark = timers.watermark_ms
        self._checkpoint: Any = None
        #: the worker's Settings (Kafka, registry, prefix) for agents that talk to Kafka themselves;
        #: None in the in-memory harness
        self.settings: Any = None

    def send(self, topic: str, key: str | bytes | None, value: Any, *, schema: str | None = None,
             headers: dict[str, str] | list[tuple[str, bytes]] | None = None,
             timestamp_ms: int | None = None) -> None:
        """Produce a record (within the same commit/transaction as the state changes). A consumed
        record is forwarded unchanged with its raw key, raw value (bytes are sent as they are),
        headers list and timestamp (`ctx.records[i].raw_key`, `.raw_value`, `.headers`, `.timestamp_ms`).
        Do not change `value` after sending it: the worker may encode it at once (while an agent
        call awaits) or at the end of the call."""
        self._outputs.append(Output(topic, key, value, schema, headers, timestamp_ms))

    def forward(self, topic: str, records: Sequence[ConsumedRecord]) -> None:
        """Produce consumed records again, unchanged, to `topic` (within the same commit or
        transaction as the state changes): what `send(topic, r.raw_key, r.raw_value,
        headers=r.headers, timestamp_ms=r.timestamp_ms)` does for each record, at a fraction of
        the cost per record. The list must not change afterwards."""
        if records:
            self._outputs.append(Forward(topic, records))

    def checkpoint(self) -> None:
        """Make every state change and output so far durable now (a commit mid-batch).

        For side effects that must be recorded before they happen (an executor marks an action
        "started" before running it). Offsets of the batch in progress are not committed, so
        its records are redelivered after a crash; writes before the checkpoint can no longer be
        rolled back if the agent raises afterwards."""
        if self._checkpoint is not None:
            self._checkpoint()

    def now_ms(self) -> int:
        """Wall-clock time (the harness controls it in tests)."""
        return self._clock()


def wall_clock_ms() -> int:
    return int(time.time() * 1000)
