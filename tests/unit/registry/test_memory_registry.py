"""The in-memory registry answers and fails exactly as the real client against Vigil's registry
server does (same values, same RegistryError status, code and message), and injected outages
raise what the real client raises while the registry is down."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.config import load_settings
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient, RegistryError, RegistryUnavailable
from app.registry.memory import InMemorySchemaSource
from app.registry.server import start_registry_in_thread
from app.registry.store import InMemorySchemaStore


def _schema(*fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": "Deploy", "namespace": "acme",
                       "fields": [{"name": "subject", "type": "string"}, *fields]})


V1 = _schema()
V2 = _schema({"name": "replicas", "type": "int", "default": 1})
BREAKING = _schema({"name": "zone", "type": "string"})  # a new field without a default: not BACKWARD

#: Calls made in order on a fresh registry; each answers a value or a RegistryError.
SCRIPT: list[tuple[str, Callable[[RegistryClient], Any]]] = [
    ("unknown id", lambda c: c.schema_by_id(42)),
    ("unknown subject", lambda c: c.version("acme.Deploy")),
    ("subjects, none", lambda c: c.subjects()),
    ("register v1", lambda c: c.register("acme.Deploy", V1)),
    ("register v1 again", lambda c: c.register("acme.Deploy", V1)),
    ("same schema, other subject", lambda c: c.register("other", V1)),
    ("register v2", lambda c: c.register("acme.Deploy", V2)),
    ("register incompatible", lambda c: c.register("acme.Deploy", BREAKING)),
    ("register not a schema", lambda c: c.register("acme.Deploy", '{"type": "nope"}')),
    ("schema by id", lambda c: c.schema_by_id(2)),
    ("latest", lambda c: c.version("acme.Deploy")),
    ("version 1", lambda c: c.version("acme.Deploy", 1)),
    ("no version 9", lambda c: c.version("acme.Deploy", 9)),
    ("bad version", lambda c: c.version("acme.Deploy", "first")),
    ("versions", lambda c: c.versions("acme.Deploy")),
    ("versions of nothing", lambda c: c.versions("nothing")),
    ("lookup", lambda c: c.lookup("acme.Deploy", V1)),
    ("lookup not under subject", lambda c: c.lookup("other", V2)),
    ("lookup no subject", lambda c: c.lookup("nothing", V1)),
    ("compatible?", lambda c: c.check_compatibility("acme.Deploy", BREAKING)),
    ("level", lambda c: c.get_compatibility("acme.Deploy")),
    ("set level", lambda c: c.set_compatibility("NONE", "acme.Deploy")),
    ("bad level", lambda c: c.set_compatibility("SIDEWAYS")),
    ("level now", lambda c: c.get_compatibility("acme.Deploy")),
    ("delete", lambda c: c.delete_subject("other")),
    ("delete again", lambda c: c.delete_subject("other")),
    ("subjects", lambda c: c.subjects()),
]


def _outcome(call: Callable[[RegistryClient], Any], client: RegistryClient) -> Any:
    try:
        return call(client)
    except RegistryError as exc:
        return ("RegistryError", exc.status, exc.error_code, exc.message, exc.is_retriable(), exc.is_not_found())


@pytest.fixture
def real_client() -> Iterator[RegistryClient]:
    handle = start_registry_in_thread(load_settings(), host="127.0.0.1", port=0, store=InMemorySchemaStore())
    client = RegistryClient(handle.url, retry_deadline_s=0)
    yield client
    client.close()
    handle.stop()


def test_every_call__answers_and_fails_as_the_real_client_against_the_server(real_client: RegistryClient) -> None:
    memory = InMemorySchemaSource()
    real = [(name, _outcome(call, real_client)) for name, call in SCRIPT]
    fake = [(name, _outcome(call, memory)) for name, call in SCRIPT]
    assert fake == real
    assert dict(real)["unknown id"][1:3] == (404, 40403)  # the script covers what it claims
    assert dict(real)["register incompatible"][1] == 409


def test_outage__raises_the_injected_error_until_recovered() -> None:
    registry = InMemorySchemaSource()
    registry.register("acme.Deploy", V1)
    registry.fail_with(RegistryUnavailable("cannot reach the schema registry at memory: refused"))
    assert registry.failing and not registry.ping()
    with pytest.raises(RegistryUnavailable) as caught:
        registry.version("acme.Deploy")
    assert caught.value.is_retriable()
    # answers the real client cached stay available, as they do in production
    assert registry.register("acme.Deploy", V1) == 1 and registry.schema_by_id(1) == V1
    with pytest.raises(RegistryUnavailable):
        registry.register("acme.Deploy", V2)
    registry.recover()
    assert registry.register("acme.Deploy", V2) == 2


def test_outage__for_a_number_of_calls() -> None:
    registry = InMemorySchemaSource()
    registry.fail_with(RegistryError(503, 50003, "store unavailable"), times=2)
    for _ in range(2):
        with pytest.raises(RegistryError, match="store unavailable"):
            registry.subjects()
    assert registry.subjects() == [] and not registry.failing
    assert registry.calls == 3


def test_serde__decoding_during_an_outage_raises_the_retriable_error_not_a_decode_error() -> None:
    registry = InMemorySchemaSource()
    data = AvroSerde(registry).encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    reader_registry = InMemorySchemaSource(registry.store)  # another process: its cache is empty
    reader_registry.fail_with(RegistryUnavailable("down"))
    reader = AvroSerde(reader_registry)
    with pytest.raises(RegistryUnavailable):
        reader.decode(data, topic="events", partition=0, offset=7)
    reader_registry.recover()
    assert reader.decode(data)["subject"] == "a"
    with pytest.raises(DecodeError, match=r"events\[0\]@8: unknown schema id 9"):
        reader.decode(b"\x00\x00\x00\x00\x09\x02", topic="events", partition=0, offset=8)
