"""Eager agents (Agent.eager): the worker decodes a turn slice by slice and runs them on each slice
at once (app.runtime.worker.intake.Intake.decode_in_slices), the other agents on the whole turn
(Engine.process's `eager` filter)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from app.model.serde import AvroSerde, DecodeError
from app.registry.errors import RegistryError
from app.runtime.agent import AgentRegistry, agent, kafka_time
from app.runtime.context import AgentContext
from app.runtime.engine import DeadLetter, InRecord
from app.runtime.testing import AgentHarness
from app.runtime.worker.intake import Intake
from tests.unit.consumed import ConsumedMessage


class Serde:
    """Decodes b"v<n>" to {"n": n}; b"bad" is undecodable for good, b"down" waits for the registry."""

    def decode_typed(self, raw: bytes) -> tuple[str, Any]:
        if raw == b"bad":
            raise DecodeError("not Avro")
        if raw == b"down":
            raise RegistryError(503, 50001, "unavailable")
        return "vigil.Event", {"n": int(raw[1:])}


def agents() -> tuple[Any, Any, list[tuple[str, list[int]]]]:
    registry = AgentRegistry()
    calls: list[tuple[str, list[int]]] = []

    @agent("events", name="copier", batch=True, eager=True, registry=registry)
    def copier(values: list[Any], ctx: AgentContext) -> None:
        calls.append(("copier", [v["n"] for v in values]))

    @agent("events", name="folder", batch=True, registry=registry)
    def folder(values: list[Any], ctx: AgentContext) -> None:
        calls.append(("folder", [v["n"] for v in values]))

    return copier, folder, calls


def test_eager_needs_batch() -> None:
    with pytest.raises(ValueError, match="eager=True needs batch=True"):
        agent("events", name="x", eager=True, registry=AgentRegistry())(lambda v, ctx: None)


def test_the_engine_runs_the_eager_agents_the_others_or_all() -> None:
    copier, folder, calls = agents()
    harness = AgentHarness([copier, folder])
    records = [InRecord("k", {"n": i}, i, 1000 + i) for i in range(3)]
    harness.engine.process("events", 0, records, eager=True)
    harness.engine.process("events", 0, records, eager=False)
    harness.engine.process("events", 0, records)
    assert calls == [("copier", [0, 1, 2]), ("folder", [0, 1, 2]), ("copier", [0, 1, 2]), ("folder", [0, 1, 2])]


def test_decode_in_slices_hands_each_record_once_in_order_and_keeps_stopped_partitions_stopped() -> None:
    copier, folder, _ = agents()
    harness = AgentHarness([copier, folder])
    dead: list[DeadLetter] = []
    intake = Intake(cast(AvroSerde, Serde()), harness.engine, {"p-events": "events", "p-other": "events"}, dead.append)
    placed = [("p-events", 0, 0, b"v0"), ("p-events", 1, 0, b"v100"), ("p-events", 0, 1, b"bad"),
              ("p-events", 0, 2, b"v2"), ("p-events", 1, 1, b"down"), ("p-other", 0, 0, b"v7"),
              ("p-events", 1, 2, b"v102"), ("p-events", 0, 3, b"v3")]
    msgs = [ConsumedMessage(partition, offset, value, topic=topic) for topic, partition, offset, value in placed]
    handed: list[tuple[str, int, list[int]]] = []

    def run(topic: str, partition: int, records: list[InRecord]) -> None:
        handed.append((topic, partition, [r.offset for r in records]))

    decoded = intake.decode_in_slices(msgs, frozenset({"p-events"}), run, 3)
    # slices of 3 messages: each eager partition's new records once, in offset order; nothing of a
    # topic without eager agents; nothing of partition 1 after the record waiting for the registry
    assert handed == [("p-events", 0, [0]), ("p-events", 1, [0]), ("p-events", 0, [2]), ("p-events", 0, [3])]
    assert {tp: [r.offset for r in g] for tp, g in decoded.groups.items()} == {
        ("p-events", 0): [0, 2, 3], ("p-events", 1): [0], ("p-other", 0): [0]}
    assert decoded.failed == {("p-events", 0): 1} and [d.offset for d in dead] == [1]
    assert list(decoded.stopped) == [("p-events", 1)] and decoded.stopped[("p-events", 1)][0] == 1
    # the same messages in one piece decode to the same turn
    again = Intake(cast(AvroSerde, Serde()), harness.engine, {"p-events": "events", "p-other": "events"}, dead.append)
    whole = again.decode(msgs)
    assert whole.groups == decoded.groups and whole.failed == decoded.failed


def test_kafka_time_gives_each_records_kafka_timestamp_as_event_time() -> None:
    seen: list[tuple[list[int], int]] = []

    @agent("events", name="stamps", batch=True, timestamp=kafka_time, registry=AgentRegistry())
    def stamps(values: list[Any], ctx: AgentContext) -> None:
        seen.append((ctx.event_times, ctx.timestamp))

    harness = AgentHarness([stamps])
    harness.engine.process("events", 0, [InRecord("k", {"time": 5}, 0, 1000), InRecord("k", None, 1, 900)])
    assert seen == [([1000, 900], 1000)] and kafka_time({"time": 5}, 1000) == 1000
