"""The compiled Avro reader (app.model.avro_reader) against fastavro, the reference: the same value
for every body it accepts, BodyError for every body it leaves to fastavro."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.model.avro_reader import BodyError, read_body, read_plan
from app.model.schemas import builtin_schema
from app.model.serde import COMPILED_READER, AvroSerde
from app.registry.memory import InMemorySchemaSource
from tests.unit.foundation.avro_values import BUILTIN, encode, same, schemas, values_of


def _fastavro(schema: Any, body: bytes) -> Any:
    """fastavro's value, or its exception; a body with bytes left over counts as rejected."""
    buf = io.BytesIO(body)
    value = schemaless_reader(buf, schema, None)
    if buf.tell() != len(body):
        raise ValueError("trailing bytes")
    return value


@st.composite
def _schema_and_body(draw: st.DrawFn) -> tuple[Any, bytes]:
    schema = draw(st.sampled_from(schemas()))
    value = draw(values_of(schema, schema["__named_schemas"]))
    return schema, encode(schema, value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_schema_and_body())
def test_valid_bodies_read_as_fastavro_reads_them(case: tuple[Any, bytes]) -> None:
    schema, body = case
    plan = read_plan(schema)
    assert plan is not None
    assert same(read_body(b"\0" * 5 + body, 5, plan), _fastavro(schema, body))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_schema_and_body(), st.data())
def test_a_damaged_body_is_read_as_fastavro_reads_it_or_left_to_fastavro(case: tuple[Any, bytes],
                                                                        data: st.DataObject) -> None:
    schema, body = case
    damage = data.draw(st.sampled_from(["truncate", "flip", "append", "overwrite"]))
    at = data.draw(st.integers(0, max(len(body) - 1, 0)))
    if damage == "truncate":
        body = body[:at]
    elif damage == "append":
        body += data.draw(st.binary(min_size=1, max_size=4))
    elif body:
        flip = 1 << data.draw(st.integers(0, 7))
        byte = data.draw(st.integers(0, 255)) if damage == "overwrite" else body[at] ^ flip
        body = body[:at] + bytes([byte]) + body[at + 1:]
    plan = read_plan(schema)
    assert plan is not None
    try:
        value = read_body(body, 0, plan)
    except BodyError:
        return  # fastavro decides (tested through the serde: the record, or its DecodeError)
    assert same(value, _fastavro(schema, body))


def _block(count: int, items: bytes) -> bytes:
    """An array/map block with a negative count and its byte size, as other writers may write."""
    return _zigzag(-count) + _zigzag(len(items)) + items


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_blocks_with_byte_sizes_are_read() -> None:
    schema = parse_schema({"type": "array", "items": "long"})
    body = _block(2, _zigzag(5) + _zigzag(-7)) + _zigzag(1) + _zigzag(9) + _zigzag(0)
    plan = read_plan(schema)
    assert plan is not None
    assert read_body(body, 0, plan) == _fastavro(schema, body) == [5, -7, 9]


@pytest.mark.parametrize(("schema", "body", "why"), [
    (["null", "string"], b"\x04", "union branch 2 of 2"),
    ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x01", "enum index -1"),
    ("long", b"\xff" * 11 + b"\x01", "a varint over 10 bytes"),
    ("long", b"\x80" * 9 + b"\x03", "a varint over 64 bits (fastavro wraps it)"),
    ("string", b"\x04\xff\xfe", "invalid UTF-8"),
    ("string", b"\x08ab", "a string longer than the body"),
    ("long", b"\x02\x00", "a byte after the value"),
])
def test_unusual_bodies_are_left_to_fastavro(schema: Any, body: bytes, why: str) -> None:
    plan = read_plan(parse_schema(schema))
    assert plan is not None
    with pytest.raises(BodyError):
        read_body(body, 0, plan)


@pytest.mark.parametrize("logical", [{"type": "long", "logicalType": "timestamp-millis"},
                                     {"type": "string", "logicalType": "uuid"},
                                     {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}])
def test_schemas_with_logical_types_are_left_to_fastavro(logical: dict[str, Any]) -> None:
    schema = parse_schema({"type": "record", "name": "R", "fields": [{"name": "v", "type": logical}]})
    assert read_plan(schema) is None


@pytest.mark.skipif(not COMPILED_READER, reason="the reader runs as Python: the serde uses fastavro alone")
def test_the_serde_reads_with_the_compiled_reader_and_fastavro_decides_the_rest() -> None:
    serde = AvroSerde(InMemorySchemaSource())
    schema = builtin_schema("vigil.Event")
    record = {"id": "e1", "time": 5, "subject": "web1", "name": "load", "kind": "METRIC", "severity": 1,
              "origin": "", "text": "", "tags": {"a": "b"}, "metrics": {"load1": 2.5}, "ttl": 30.0,
              "extended": None, "trace_id": None}
    data = serde.encode(record, schema)
    assert serde._readers[1].plan is not None
    assert serde.decode_typed(data) == ("vigil.Event", record)
    # a negative enum index: the reader declines, fastavro reads it (Python indexing from the end)
    kind_at = data.index(b"\x08load") + 5
    odd = data[:kind_at] + b"\x01" + data[kind_at + 1:]
    assert serde.decode_typed(odd)[1]["kind"] == _fastavro(schema.parsed, odd[5:])["kind"]


def test_schema_json_files_all_have_plans() -> None:
    for name in BUILTIN:
        assert read_plan(builtin_schema(name).parsed) is not None, name
