"""RegistryWait: waits out a registry outage (saying so once), never a missing schema."""

from __future__ import annotations

import pytest

from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryError, RegistryUnavailable
from app.registry.memory import InMemorySchemaSource
from app.registry.waiting import RegistryWait


@pytest.fixture
def framed() -> tuple[InMemorySchemaSource, bytes]:
    """An Event framed by one process, and the registry another process reads it through."""
    writer = InMemorySchemaSource()
    data = AvroSerde(writer).encode(Event(subject="web1", name="load").to_record(), builtin_schema("vigil.Event"))
    return InMemorySchemaSource(writer.store), data


def test_waits_out_an_outage_saying_so_once_and_when_it_is_over(framed: tuple[InMemorySchemaSource, bytes]) -> None:
    registry, data = framed
    registry.fail_with(RegistryUnavailable("cannot reach the schema registry at memory: refused"), times=4)
    told: list[str] = []
    slept: list[float] = []
    wait = RegistryWait(notify=told.append, sleep=slept.append)
    serde = AvroSerde(registry)
    name, record = wait.call(lambda: serde.decode_typed(data, topic="events", partition=0, offset=3))
    assert (name, record["subject"]) == ("vigil.Event", "web1")
    assert len(slept) == wait.retries == 4
    assert len(told) == 2
    assert "schema registry is unavailable (cannot reach the schema registry" in told[0]
    assert "retried until it answers" in told[0] and "answers again" in told[1]
    assert wait.waiting_since is None


def test_a_missing_schema_is_not_waited_for(framed: tuple[InMemorySchemaSource, bytes]) -> None:
    registry, _ = framed
    wait = RegistryWait(sleep=lambda s: pytest.fail("slept"))
    serde = AvroSerde(registry)
    with pytest.raises(DecodeError, match=r"events\[2\]@9: unknown schema id 77"):
        wait.call(lambda: serde.decode(b"\x00\x00\x00\x00\x4d\x02", topic="events", partition=2, offset=9))


def test_past_its_deadline__the_last_registry_error_is_raised() -> None:
    registry = InMemorySchemaSource()
    registry.fail_with(RegistryError(503, 50003, "store unavailable"))
    told: list[str] = []
    wait = RegistryWait(notify=told.append, deadline_s=0.2, initial_s=0.01, max_s=0.05)
    with pytest.raises(RegistryError, match="store unavailable") as caught:
        wait.call(registry.subjects)
    assert caught.value.status == 503 and wait.retries >= 1
    assert told and "for up to 0.2s" in told[0]
