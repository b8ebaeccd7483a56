"""confluent-kafka's own client and serializers against Vigil's registry, and serde interop both ways."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import (
    Metadata,
    MetadataProperties,
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
    record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.common.schema_registry_client import ConfigCompatibilityLevel, ServerConfig
from confluent_kafka.serialization import MessageField, SerializationContext

from app.config import Settings
from app.model.schemas import builtin_schema, parse_schema_text
from app.model.serde import AvroSerde, schema_id_of
from app.registry.client import RegistryClient
from app.registry.server import RegistryHandle
from tests.unit.registry.compat_cases import HOST, VALUE, record

CTX = SerializationContext("events", MessageField.VALUE)


@pytest.fixture
def confluent(registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


@pytest.fixture
def vigil_serde(client: RegistryClient) -> Iterator[AvroSerde]:
    yield AvroSerde(client)


def reading_schema() -> str:
    """A record type no other test registers (the session registry is shared)."""
    return json.dumps({
        "type": "record", "name": "Reading", "namespace": f"interop.n{uuid.uuid4().hex[:8]}",
        "fields": [
            {"name": "host", "type": "string"},
            {"name": "value", "type": "double"},
            {"name": "level", "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]}},
            {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    })


READING = {"host": "web1", "value": 2.5, "level": "HIGH", "tags": {"dc": "x"}, "note": None}


def test_confluent_client__register_get_lookup_versions(confluent: SchemaRegistryClient, subject: str) -> None:
    v1 = record(HOST, name="Conf")
    v2 = record(HOST, {"name": "unit", "type": "string", "default": ""}, name="Conf")
    first = confluent.register_schema(subject, Schema(v1, "AVRO"))
    second = confluent.register_schema(subject, Schema(v2, "AVRO"))
    assert second != first
    assert confluent.register_schema(subject, Schema(v1, "AVRO")) == first
    assert json.loads(confluent.get_schema(first).schema_str) == json.loads(v1)
    found = confluent.lookup_schema(subject, Schema(v2, "AVRO"))
    assert (found.schema_id, found.version, found.subject) == (second, 2, subject)
    assert confluent.get_versions(subject) == [1, 2]
    latest = confluent.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert confluent.get_version(subject, 1).schema_id == first
    assert subject in confluent.get_subjects()
    assert confluent.get_subjects_by_schema_id(second) == [subject]
    assert [(v.subject, v.version) for v in confluent.get_schema_versions(second)] == [(subject, 2)]
    assert "AVRO" in confluent.get_schema_types()


def test_confluent_client__compatibility_and_config(confluent: SchemaRegistryClient, subject: str) -> None:
    confluent.register_schema(subject, Schema(record(HOST, name="Cfg"), "AVRO"))
    breaking = Schema(record({"name": "host", "type": "int"}, name="Cfg"), "AVRO")
    assert confluent.test_compatibility(subject, breaking) is False
    assert confluent.test_compatibility(subject, breaking, verbose=True) is False
    assert confluent.test_compatibility_all_versions(subject, breaking) is False
    with pytest.raises(SchemaRegistryError) as err:
        confluent.register_schema(subject, breaking)
    assert (err.value.http_status_code, err.value.error_code) == (409, 409)
    confluent.set_compatibility(subject, "NONE")
    assert confluent.get_compatibility(subject) == "NONE"
    assert confluent.test_compatibility(subject, breaking) is True
    confluent.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel.FULL))
    assert confluent.get_config(subject).compatibility_level == ConfigCompatibilityLevel.FULL
    assert confluent.delete_config(subject).compatibility_level == ConfigCompatibilityLevel.FULL
    assert confluent.get_config().compatibility_level is not None


def test_confluent_client__deletes_and_errors(confluent: SchemaRegistryClient, subject: str) -> None:
    confluent.register_schema(subject, Schema(record(HOST, name="Del"), "AVRO"))
    assert confluent.delete_version(subject, 1) == 1
    with pytest.raises(SchemaRegistryError) as err:
        confluent.get_version(subject, 1)
    assert err.value.error_code == 40401  # no live versions left
    assert confluent.get_version(subject, 1, deleted=True).version == 1
    assert confluent.delete_subject(subject, permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as err:
        confluent.get_schema(999_999)
    assert err.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as err:
        confluent.register_schema(subject, Schema('{"type": "nonsense"}', "AVRO"))
    assert err.value.error_code == 42201


def test_interop__confluent_serializer_to_vigil_serde(confluent: SchemaRegistryClient,
                                                      vigil_serde: AvroSerde) -> None:
    text = reading_schema()
    serializer = AvroSerializer(confluent, text, conf={"subject.name.strategy": record_subject_name_strategy})
    data = serializer(READING, CTX)
    assert data is not None
    fullname, decoded = vigil_serde.decode_typed(data)
    assert decoded == READING
    assert fullname == f"{json.loads(text)['namespace']}.Reading"


def test_interop__vigil_serde_to_confluent_deserializer(confluent: SchemaRegistryClient, vigil_serde: AvroSerde,
                                                        client: RegistryClient) -> None:
    schema = parse_schema_text(reading_schema())
    data = vigil_serde.encode(READING, schema)
    assert AvroDeserializer(confluent)(data, CTX) == READING
    # Vigil registered under the record-name subject, as confluent's RecordNameStrategy would.
    assert client.lookup(schema.fullname, schema.text).id == schema_id_of(data)


def test_interop__same_schema_from_both_sides_gets_one_id(confluent: SchemaRegistryClient,
                                                          vigil_serde: AvroSerde) -> None:
    text = reading_schema()
    vigil_bytes = vigil_serde.encode(READING, parse_schema_text(text))
    # Confluent sends the text as written (spaces, key order); Vigil sends its canonical JSON.
    serializer = AvroSerializer(confluent, json.dumps(json.loads(text), indent=2),
                                conf={"subject.name.strategy": record_subject_name_strategy})
    confluent_bytes = serializer(READING, CTX)
    assert confluent_bytes is not None
    assert schema_id_of(confluent_bytes) == schema_id_of(vigil_bytes)
    assert confluent_bytes == vigil_bytes


def test_interop__vigil_event_schema_round_trips(confluent: SchemaRegistryClient, vigil_serde: AvroSerde) -> None:
    event_schema = builtin_schema("vigil.Event")
    event: dict[str, Any] = {
        "id": "e1", "time": 1_700_000_000_000, "subject": "web1", "name": "load", "kind": "METRIC",
        "severity": 1, "origin": "test", "text": "", "tags": {"a": "b"}, "metrics": {"load1": 0.5},
        "ttl": 60.0, "extended": None, "trace_id": None,
    }
    data = vigil_serde.encode(event, event_schema)
    assert AvroDeserializer(confluent)(data, CTX) == event
    serializer = AvroSerializer(confluent, event_schema.text,
                                conf={"subject.name.strategy": record_subject_name_strategy})
    back = serializer(event, CTX)
    assert back is not None and vigil_serde.decode(back) == event


# -- modes, references and serializers with confluent-kafka's own client -------------------------
ADDRESS = json.dumps({"type": "record", "name": "Address", "namespace": "com.acme",
                      "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "string"}]})
USER = json.dumps({"type": "record", "name": "User", "namespace": "com.acme",
                   "fields": [{"name": "name", "type": "string"}, {"name": "home", "type": "com.acme.Address"}]})
USER_VALUE = {"name": "ann", "home": {"street": "Main St 1", "zip": "1000"}}


def test_confluent_client__modes_and_import(fresh_registry_settings: Settings,
                                            start_registry: Callable[[Settings], RegistryHandle]) -> None:
    handle = start_registry(fresh_registry_settings)
    sr = SchemaRegistryClient({"url": handle.url, "max.retries": 0})
    subject = "modes-value"
    sr.register_schema(subject, Schema(record(HOST, name="M"), "AVRO"))
    with pytest.raises(SchemaRegistryError) as err:
        sr.get_mode(subject)
    assert err.value.error_code == 40409
    assert sr.update_mode(subject, "READONLY") == "READONLY"
    assert sr.get_mode(subject) == "READONLY"
    with pytest.raises(SchemaRegistryError) as err:
        sr.register_schema(subject, Schema(record(HOST, VALUE, name="M"), "AVRO"))
    assert (err.value.http_status_code, err.value.error_code) == (422, 42205)
    assert sr.delete_mode(subject) == "READONLY"
    with pytest.raises(SchemaRegistryError) as err:
        sr.update_global_mode("IMPORT")  # a subject exists: IMPORT needs force
    assert err.value.error_code == 42205
    assert sr.update_global_mode("IMPORT", force=True) == "IMPORT"
    assert sr.get_global_mode() == "IMPORT"
    # confluent-kafka's Schema carries no id; migration tools post it themselves.
    with httpx.Client(base_url=handle.url, timeout=30) as http:
        resp = http.post("/subjects/imported-value/versions",
                         json={"schema": record(HOST, name="Imported"), "id": 4242, "version": 3})
    assert resp.json() == {"id": 4242, "version": 3, "subject": "imported-value"}
    assert sr.update_global_mode("READWRITE") == "READWRITE"
    assert sr.get_schema(4242).schema_str == record(HOST, name="Imported")
    assert sr.get_version("imported-value", 3).schema_id == 4242
    assert sr.register_schema("next-value", Schema(record(HOST, name="Next"), "AVRO")) == 4243


def test_confluent_client__references_lookup_and_referenced_by(confluent: SchemaRegistryClient, registry_url: str,
                                                               subject: str) -> None:
    address_subject, user_subject = f"{subject}-address", f"{subject}-user"
    address_id = confluent.register_schema(address_subject, Schema(ADDRESS, "AVRO"))
    refs = [SchemaReference("com.acme.Address", address_subject, 1)]
    user_id = confluent.register_schema(user_subject, Schema(USER, "AVRO", refs))
    assert user_id != address_id
    assert confluent.get_referenced_by(address_subject, 1) == [user_id]
    found = SchemaRegistryClient({"url": registry_url}).lookup_schema(
        user_subject, Schema(USER, "AVRO", refs))
    assert (found.schema_id, found.version) == (user_id, 1)
    fetched = SchemaRegistryClient({"url": registry_url}).get_schema(user_id)
    assert fetched.references == refs
    assert confluent.get_latest_version(user_subject).schema.references == refs
    with pytest.raises(SchemaRegistryError) as err:
        confluent.delete_subject(address_subject)
    assert (err.value.http_status_code, err.value.error_code) == (422, 42206)


def test_confluent_serializers__use_latest_version_with_references(confluent: SchemaRegistryClient,
                                                                   registry_url: str) -> None:
    topic = f"people-{uuid.uuid4().hex[:8]}"
    address_subject = f"{topic}-address"
    confluent.register_schema(address_subject, Schema(ADDRESS, "AVRO"))
    refs = [SchemaReference("com.acme.Address", address_subject, 1)]
    user_id = confluent.register_schema(f"{topic}-value", Schema(USER, "AVRO", refs))
    ctx = SerializationContext(topic, MessageField.VALUE)
    latest = AvroSerializer(confluent, None, conf={"auto.register.schemas": False, "use.latest.version": True})
    data = latest(USER_VALUE, ctx)
    assert data is not None and schema_id_of(data) == user_id
    # A fresh client resolves the references of the writer's id by itself.
    reader = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    assert reader(data, ctx) == USER_VALUE
    # A serializer given the schema and its references looks it up instead of registering it.
    looked_up = AvroSerializer(SchemaRegistryClient({"url": registry_url}), Schema(USER, "AVRO", refs),
                               conf={"auto.register.schemas": False})
    assert looked_up(USER_VALUE, ctx) == data


def test_confluent_client__config_fields_round_trip(confluent: SchemaRegistryClient, subject: str) -> None:
    meta = Metadata(tags=None, properties=MetadataProperties({"owner": "team-a"}), sensitive=None)
    confluent.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel.FORWARD,
                                               compatibility_group="app.version", default_metadata=meta))
    got = confluent.get_config(subject)
    assert got.compatibility_level == ConfigCompatibilityLevel.FORWARD
    assert got.compatibility_group == "app.version"
    assert got.default_metadata is not None and got.default_metadata.properties.properties == {"owner": "team-a"}
    confluent.register_schema(subject, Schema(record(HOST, name="Meta"), "AVRO"))
    registered = confluent.get_latest_version(subject)
    assert registered.schema.metadata is not None
    assert registered.schema.metadata.properties.properties == {"owner": "team-a"}
