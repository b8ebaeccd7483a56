"""Reading history (`vigil actions`, `vigil trace`) while the schema registry is away: records are
waited for, never skipped; a record whose schema id does not exist is skipped and named."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import TopicPartition

from app.actions.history import HistoryError, _read, avro_decoder
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryError, RegistryUnavailable
from app.registry.memory import InMemorySchemaSource
from app.registry.waiting import RegistryWait
from tests.unit.consumed import ConsumedMessage


class FakeConsumer:
    """Hands out its messages in one batch, then nothing; positions are at the end."""

    def __init__(self, messages: list[ConsumedMessage]) -> None:
        self.messages = messages

    def consume(self, num_messages: int, timeout: float) -> list[ConsumedMessage]:
        out, self.messages = self.messages, []
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 3) for tp in partitions]


def _events() -> tuple[InMemorySchemaSource, list[ConsumedMessage]]:
    writer = InMemorySchemaSource()
    serde = AvroSerde(writer)
    encoded = [serde.encode(Event(subject="web1", name=f"n{i}").to_record(), builtin_schema("vigil.Event"))
               for i in range(2)]
    unknown_id = b"\x00\x00\x00\x00\x63\x02"
    messages = [ConsumedMessage(0, 0, encoded[0]), ConsumedMessage(0, 1, unknown_id), ConsumedMessage(0, 2, encoded[1])]
    return InMemorySchemaSource(writer.store), messages  # the reader: another process, nothing cached


def test_a_registry_outage_is_waited_out_and_an_unknown_schema_id_is_skipped_by_name(
        caplog: pytest.LogCaptureFixture) -> None:
    registry, messages = _events()
    registry.fail_with(RegistryUnavailable("cannot reach the schema registry at memory: refused"), times=3)
    told: list[str] = []
    wait = RegistryWait(notify=told.append, sleep=lambda s: None)
    with caplog.at_level(logging.WARNING, logger="app.actions.history"):
        records = _read(FakeConsumer(messages), "events", {0: 3}, avro_decoder(AvroSerde(registry)), [], 60.0, wait)
    assert [(r.offset, r.value["name"]) for r in records] == [(0, "n0"), (2, "n1")]
    assert len(told) == 2 and "unavailable" in told[0]
    lines = [r.getMessage() for r in caplog.records]
    assert any("skipping events[0]@1, it cannot be decoded: unknown schema id 99" in line for line in lines), lines


def test_a_registry_that_refuses__stops_the_read_with_the_place_and_the_reason() -> None:
    registry, messages = _events()
    registry.fail_with(RegistryError(401, 401, "Unauthorized"))
    wait = RegistryWait(sleep=lambda s: pytest.fail("a 401 is not waited for"))
    with pytest.raises(HistoryError, match=r"cannot decode events\[0\]@0 without the schema registry: .*Unauthorized"):
        _read(FakeConsumer(messages), "events", {0: 3}, avro_decoder(AvroSerde(registry)), [], 60.0, wait)
