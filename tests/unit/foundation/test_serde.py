"""Confluent-framed Avro serde: round trips, caching, and typed errors for bad input."""

from __future__ import annotations

import json
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from app.model import serde as serde_module
from app.model.avro_plan import Declined
from app.model.avro_reader import BodyError
from app.model.avro_writer import WriterDeclined
from app.model.events import Alert, Event, Kind
from app.model.schemas import SchemaFileError, builtin_schema, parse_schema_text
from app.model.serde import AvroSerde, DecodeError, EncodeError, frame_header, schema_id_of
from app.registry.memory import InMemorySchemaSource

CUSTOM = parse_schema_text(json.dumps({
    "type": "record", "name": "DiskRepair", "namespace": "acme.ops",
    "fields": [{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},
               {"name": "time", "type": "long"}, {"name": "disk", "type": "string"},
               {"name": "bytes_freed", "type": "long", "default": 0}]}))


@pytest.fixture
def serde() -> AvroSerde:
    return AvroSerde(InMemorySchemaSource())


def test_event__round_trips_with_frame_and_schema_id(serde: AvroSerde) -> None:
    ev = Event(subject="web1", name="load", kind=Kind.METRIC, severity=1, metrics={"load1": 2.5},
               tags={"role": "lb"}, ttl=30, extended={"k": [1, 2]}, text="high")
    data = serde.encode(ev.to_record(), builtin_schema("vigil.Event"))
    assert data[:5] == frame_header(1) and schema_id_of(data) == 1
    name, record = serde.decode_typed(data)
    assert name == "vigil.Event"
    assert Event.from_record(record) == ev


def test_custom_type__round_trips_without_code_changes(serde: AvroSerde) -> None:
    data = serde.encode({"subject": "db1", "name": "repair", "time": 5, "disk": "sda"}, CUSTOM)
    expected = {"subject": "db1", "name": "repair", "time": 5, "disk": "sda", "bytes_freed": 0}
    assert serde.decode_typed(data) == ("acme.ops.DiskRepair", expected)


def test_reader_cache__fetches_each_schema_id_once() -> None:
    source = InMemorySchemaSource()
    writer = AvroSerde(source)
    data = writer.encode(Alert(subject="a", name="b", from_state="OK", to_state="CRITICAL").to_record(),
                         builtin_schema("vigil.Alert"))
    calls: list[int] = []
    original = source.schema_by_id

    def counting(schema_id: int) -> str:
        calls.append(schema_id)
        return original(schema_id)

    source.schema_by_id = counting  # type: ignore[method-assign]
    reader = AvroSerde(source)
    for _ in range(3):
        reader.decode(data)
    assert calls == [1]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "shorter than the 5-byte frame header"),
    (b"\x01\x00\x00\x00\x01\x02", "wrong magic byte 1"),
    (b"\x00\x00\x00\x00\x63\x02", "unknown schema id 99"),
    (None, "no value (tombstone)"),
])
def test_decode__bad_framing_raises_typed_error_with_location(serde: AvroSerde, data, reason) -> None:
    serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    with pytest.raises(DecodeError, match=re.escape(reason)) as err:
        serde.decode(data, topic="events", partition=3, offset=42)
    assert (err.value.topic, err.value.partition, err.value.offset) == ("events", 3, 42)
    assert "events[3]@42" in str(err.value)


def test_decode__body_not_matching_schema_names_schema(serde: AvroSerde) -> None:
    good = serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    with pytest.raises(DecodeError, match="does not match schema vigil.Event"):
        serde.decode(good[:-4], topic="events", partition=0, offset=1)
    with pytest.raises(DecodeError, match="trailing bytes"):
        serde.decode(good + b"\x00\x00", topic="events", partition=0, offset=1)


def test_encode__record_not_matching_schema_raises(serde: AvroSerde) -> None:
    with pytest.raises(EncodeError, match="acme.ops.DiskRepair"):
        serde.encode({"subject": "db1", "name": "x", "time": "not a long", "disk": "sda"}, CUSTOM)


@given(st.binary(max_size=200))
def test_decode__arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    serde = AvroSerde(InMemorySchemaSource())
    serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    try:
        serde.decode(data)
    except DecodeError:
        pass


@pytest.mark.parametrize("text", ['{"type": "record"', '{"type": "enum", "name": "X", "symbols": []}',
                                  '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}'])
def test_schema_text__invalid_is_reported(text: str) -> None:
    with pytest.raises(SchemaFileError):
        parse_schema_text(text)


def test_event_model__rejects_nan_metrics_and_empty_identity() -> None:
    with pytest.raises(ValueError, match="finite"):
        Event(subject="a", name="b", metrics={"x": float("nan")})
    with pytest.raises(ValueError, match="must not be empty"):
        Event(subject=" ", name="b")


# -- the compiled codec's fallbacks to fastavro -------------------------------------------------

@pytest.fixture
def compiled_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The serde takes the compiled codec's paths (its Python source when not built): same logic."""
    monkeypatch.setattr(serde_module, "COMPILED_READER", True)
    monkeypatch.setattr(serde_module, "COMPILED_WRITER", True)


def test_declined_is_the_one_exception_the_compiled_codec_raises_on_purpose() -> None:
    assert issubclass(BodyError, Declined) and issubclass(WriterDeclined, Declined)


@pytest.mark.usefixtures("compiled_paths")
def test_declines__fall_back_to_fastavro_and_are_counted_by_reason(serde: AvroSerde) -> None:
    good = serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    with pytest.raises(DecodeError, match="trailing bytes"):  # fastavro's verdict, as before
        serde.decode(good + b"\x00")
    record = {"subject": "db1", "name": "x", "time": True, "disk": "sda"}  # a bool for a long
    assert serde.decode(serde.encode(record, CUSTOM))["time"] == 1  # fastavro writes it as 1
    assert serde.stats.fallbacks() == {("decode", "trailing bytes"): 1, ("encode", "not an int"): 1}
    assert serde.stats.bugs() == {}


@pytest.mark.usefixtures("compiled_paths")
def test_a_bug_in_the_compiled_reader__is_counted_and_logged_once_per_schema_and_loses_nothing(
        serde: AvroSerde, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    event = Event(subject="a", name="b")
    data = serde.encode(event.to_record(), builtin_schema("vigil.Event"))

    def broken(data: bytes, start: int, plan: object) -> object:
        raise IndexError("off by one")

    monkeypatch.setattr(serde_module, "read_body", broken)
    with caplog.at_level(logging.ERROR, logger="app.model.serde"):
        decoded = [serde.decode(data) for _ in range(3)]
    assert all(Event.from_record(r) == event for r in decoded)
    assert serde.stats.bugs() == {("decode", "vigil.Event", "IndexError"): 3}
    assert serde.stats.fallbacks() == {}
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "a bug in app.model.avro_reader" in line.getMessage() and line.exc_info is not None


@pytest.mark.usefixtures("compiled_paths")
def test_a_bug_in_the_compiled_writer__is_counted_and_fastavro_writes_the_record(
        serde: AvroSerde, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: object, plan: object, prefix: bytes = b"") -> bytes:
        raise TypeError("unexpected")

    monkeypatch.setattr(serde_module, "write_body", broken)
    record = {"subject": "db1", "name": "x", "time": 5, "disk": "sda", "bytes_freed": 0}
    assert serde.decode(serde.encode(record, CUSTOM)) == record
    assert serde.stats.bugs() == {("encode", "acme.ops.DiskRepair", "TypeError"): 1}


@pytest.mark.usefixtures("compiled_paths")
def test_codec_stats__as_samples_and_as_a_prometheus_collector(serde: AvroSerde) -> None:
    good = serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    with pytest.raises(DecodeError):
        serde.decode(good[:-1])
    samples = serde.stats.samples()
    assert ("vigil_serde_fastavro_fallbacks_total", {"direction": "decode", "reason": "truncated"}, 1.0) in samples
    assert ("vigil_serde_compiled", {"codec": "reader"}, 1.0) in samples
    registry = CollectorRegistry()
    registry.register(serde.stats.collector())
    assert registry.get_sample_value("vigil_serde_fastavro_fallbacks_total",
                                     {"direction": "decode", "reason": "truncated"}) == 1.0
    assert registry.get_sample_value("vigil_serde_compiled", {"codec": "writer"}) == 1.0
    assert b"vigil_serde_codec_bugs" in generate_latest(registry)


@pytest.mark.usefixtures("compiled_paths")
def test_model_records_with_default_enums__are_not_declined(serde: AvroSerde) -> None:
    """Default enum members are plain values in records (they sent every Event through fastavro)."""
    serde.encode(Event(subject="a", name="b").to_record(), builtin_schema("vigil.Event"))
    serde.encode(Alert(subject="a", name="b", from_state="OK", to_state="CRITICAL").to_record(),
                 builtin_schema("vigil.Alert"))
    assert serde.stats.fallbacks() == {}
