"""What an agent gets besides the event: where it came from, tables, timers, and send()."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.runtime.timers import PartitionTimers

__all__ = ["AgentContext", "Output"]


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


class AgentContext:
    """Per agent-partition context, updated in place for each event (cheap on the hot path)."""

    __slots__ = ("_checkpoint", "_clock", "_outputs", "agent_name", "event_times", "key", "offset", "partition",
                 "raw_value", "records", "settings", "tables", "timers", "timestamp", "topic", "type_name", "watermark")

    def __init__(self, agent_name: str, topic: str, partition: int, tables: dict[str, Any],
                 timers: PartitionTimers, outputs: list[Output], clock: Any) -> None:
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
        headers list and timestamp (`ctx.records[i].raw_key`, `.raw_value`, `.headers`, `.timestamp_ms`)."""
        self._outputs.append(Output(topic, key, value, schema, headers, timestamp_ms))

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
