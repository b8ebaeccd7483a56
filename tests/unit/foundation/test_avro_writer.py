"""The compiled Avro writer (app.model.avro_writer) against fastavro, the reference: the same bytes
for every value it accepts, WriterDeclined for every value it leaves to fastavro, and through the
serde fastavro's bytes or fastavro's error either way."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from fastavro import parse_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.model import serde as serde_module
from app.model.avro_writer import WriterDeclined, write_body, write_plan
from app.model.schemas import builtin_schema, parse_schema_text
from app.model.serde import COMPILED_WRITER, AvroSerde, EncodeError, frame_header
from app.registry.memory import InMemorySchemaSource
from tests.unit.foundation.avro_values import BUILTIN, encode, schemas, values_of

#: unions of several branches that each take other Python types (so the writer writes them all),
#: and fields a record may leave out: defaults of every kind (one fastavro cannot write), nullable
EVERY_UNION = parse_schema({
    "type": "record", "name": "Unions", "namespace": "t",
    "fields": [
        {"name": "u1", "type": ["null", "long", "string", {"type": "array", "items": "string"},
                                {"type": "map", "values": "double"}]},
        {"name": "u2", "type": ["boolean", "bytes", {"type": "enum", "name": "Suit", "symbols": ["S", "H"]},
                                {"type": "record", "name": "Pt", "fields": [
                                    {"name": "x", "type": "float"},
                                    {"name": "next", "type": ["null", "Pt"], "default": None}]}]},
        {"name": "u3", "type": [{"type": "fixed", "name": "Four", "size": 4}, "float", "null",
                                {"type": "array", "items": "Suit"}]},
        {"name": "dl", "type": "long", "default": 7}, {"name": "di", "type": "int", "default": -3},
        {"name": "dd", "type": "double", "default": 1}, {"name": "df", "type": "float", "default": 2.5},
        {"name": "ds", "type": "string", "default": "x"}, {"name": "dflag", "type": "boolean", "default": True},
        {"name": "de", "type": "Suit", "default": "H"}, {"name": "dnull", "type": "null", "default": None},
        {"name": "dm", "type": {"type": "map", "values": "int"}, "default": {"a": 1}},
        {"name": "da", "type": {"type": "array", "items": "boolean"}, "default": [True, False]},
        {"name": "dr", "type": "Pt", "default": {"x": 1.5}},
        {"name": "du", "type": ["long", "null"], "default": 3},
        {"name": "db", "type": "bytes", "default": "\u00ff"},
        {"name": "nullable", "type": ["long", "null"]}, {"name": "null_only", "type": "null"},
    ]})

#: values of the wrong type, range or shape for some node (fastavro writes some, fails on others)
JUNK = [None, True, False, 0, -1, 2**31, -2**31 - 1, 2**63, -2**63 - 1, 2**1100, 1.5, math.nan, math.inf, 3.5e38,
        "", "S", "x", "\ud800", b"", b"abcd", bytearray(b"ab"), [], [1, 2], ("string", "x"), {}, {"x": 1.0},
        {"-type": "t.Other", "x": 1.0}, OrderedDict(x=1.0)]


def _all_schemas() -> list[Any]:
    return [*schemas(), EVERY_UNION]


def _fastavro(schema: Any, value: Any) -> bytes | None:
    """fastavro's bytes, or None when it fails."""
    try:
        return encode(schema, value)
    except Exception:
        return None


def _loosen(schema: Any, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of one node, plus what fastavro also takes or refuses: ints and any floats for
    floats and doubles, records without a field or two, and now and then (1 in 30) a junk value."""
    kind = schema if isinstance(schema, str) else schema["type"] if isinstance(schema, dict) else "union"
    if kind in ("float", "double"):
        values = st.one_of(values, st.integers(-2**64, 2**64), st.floats())
    if kind in ("record", "error"):
        names = [f["name"] for f in schema["fields"]]
        values = st.tuples(values, _rarely(st.just(set()), st.sets(st.sampled_from(names), max_size=2), 5)).map(
            lambda pair: {k: v for k, v in pair[0].items() if k not in pair[1]})
    return values if kind == "union" else _rarely(values, st.sampled_from(JUNK), 30)


def _rarely(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    """`rare` once in `one_in` draws, else `usual` (what hypothesis shrinks towards)."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == one_in else usual)


@st.composite
def _valid(draw: st.DrawFn) -> tuple[Any, Any]:
    schema = draw(st.sampled_from([builtin_schema(name).parsed for name in BUILTIN] + [EVERY_UNION]))
    return schema, draw(values_of(schema, schema["__named_schemas"]))


@st.composite
def _any(draw: st.DrawFn) -> tuple[Any, Any]:
    schema = draw(st.sampled_from(_all_schemas()))
    return schema, draw(values_of(schema, schema["__named_schemas"], tweak=_loosen))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_valid())
def test_valid_values_are_written_as_fastavro_writes_them(case: tuple[Any, Any]) -> None:
    """Every value of Vigil's schemas (and of unions whose branches take distinct types): never declined."""
    schema, value = case
    plan = write_plan(schema)
    assert plan is not None
    assert write_body(value, plan) == encode(schema, value)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(_any())
def test_any_value_is_written_as_fastavro_writes_it_or_declined(case: tuple[Any, Any]) -> None:
    schema, value = case
    plan = write_plan(schema)
    assert plan is not None
    try:
        body = write_body(value, plan)
    except WriterDeclined:
        return  # fastavro decides (tested through the serde: its bytes, or its error)
    assert body == _fastavro(schema, value)


def test_the_prefix_comes_first() -> None:
    plan = write_plan(parse_schema("string"))
    assert plan is not None
    assert write_body("ab", plan, b"\0\0\0\0\1") == b"\0\0\0\0\1\x04ab"


@pytest.mark.parametrize(("value", "written"), [({}, b"\0"), ({"a": 1}, b"\x02\x02a\x02\0"),
                                                ({"a": 1, "b": -1}, b"\x04\x02a\x02\x02b\x01\0")])
def test_a_map_is_one_block_then_the_end(value: dict[str, int], written: bytes) -> None:
    schema = parse_schema({"type": "map", "values": "long"})
    plan = write_plan(schema)
    assert plan is not None
    assert write_body(value, plan) == encode(schema, value) == written


def _field(schema: Any, default: Any = ..., name: str = "R") -> dict[str, Any]:
    field = {"name": "v", "type": schema} if default is ... else {"name": "v", "type": schema, "default": default}
    return {"type": "record", "name": name, "namespace": "t", "fields": [field]}


ENUM = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
MAPPING = {"type": "map", "values": "long"}
POINT = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}]}

#: (field schema, field value, why the writer declines it); fastavro writes some of them, fails on the others
DECLINED = [
    ("long", True, "a bool for a long (fastavro writes 1)"),
    ("int", 2**31, "an int beyond 32 bits (fastavro writes it as a long)"),
    ("int", -2**31 - 1, "an int below 32 bits"),
    ("long", 2**63, "an int beyond 64 bits"),
    ("long", 3.0, "a float for a long"),
    ("double", True, "a bool for a double"),
    ("double", "NaN", "a str for a double (fastavro parses it)"),
    ("double", 2**1100, "an int beyond the double range"),
    ("float", 1e300, "a double beyond the float range (fastavro writes infinity)"),
    ("bytes", bytearray(b"ab"), "a bytearray for bytes"),
    ("bytes", "ab", "a str for bytes"),
    ("string", b"ab", "bytes for a string"),
    ("string", "\ud800", "a lone surrogate"),
    ({"type": "fixed", "name": "F", "size": 2}, b"abc", "bytes of the wrong size"),
    (ENUM, "C", "not a symbol"),
    (MAPPING, {1: 1}, "a key that is not a str"),
    (MAPPING, OrderedDict(a=1), "a dict subclass"),
    ({"type": "array", "items": "long"}, (1, 2), "a tuple for an array"),
    (["null", "string"], 5, "a union value that matches no branch"),
    (["null", "long"], True, "a bool for a nullable long"),
    (["string", ENUM], "A", "a str for a union of a string and an enum"),
    (["float", "double"], 1.5, "a float for a union of float and double (fastavro takes the double)"),
    ([{"type": "array", "items": "int"}, "bytes"], b"ab", "bytes for a union of bytes and an int array"),
    ([MAPPING, POINT], {"x": 1}, "a dict for a union of a map and a record"),
    (["null", POINT], {"x": 1, "-type": "t.Q"}, "a record with a -type key"),
    (["null", "string"], ("string", "x"), "a union value in tuple notation"),
]


@pytest.mark.parametrize(("schema", "value", "why"), DECLINED, ids=[why for _, _, why in DECLINED])
def test_values_fastavro_may_write_otherwise_are_declined(schema: Any, value: Any, why: str) -> None:
    plan = write_plan(parse_schema(_field(schema)))
    assert plan is not None
    with pytest.raises(WriterDeclined):
        write_body({"v": value}, plan)


@pytest.mark.parametrize(("schema", "default"), [("long", ...), ("string", ...), ("bytes", "\u00ff"),
                                                 ({"type": "fixed", "name": "F", "size": 1}, "a")])
def test_a_missing_field_without_a_default_it_can_write_is_declined(schema: Any, default: Any) -> None:
    plan = write_plan(parse_schema(_field(schema, default)))
    assert plan is not None
    with pytest.raises(WriterDeclined):
        write_body({}, plan)


@pytest.mark.parametrize(("schema", "default"), [("long", 7), ("double", 1), (["null", "long"], ...),
                                                 (["long", "null"], ...), (["long", "null"], 4), (ENUM, "B"),
                                                 (MAPPING, {"a": 1}), (POINT, {"x": 2})])
def test_a_missing_field_is_written_as_fastavro_fills_it(schema: Any, default: Any) -> None:
    parsed = parse_schema(_field(schema, default))
    plan = write_plan(parsed)
    assert plan is not None
    assert write_body({}, plan) == encode(parsed, {})


def _schema_file(schema: Any) -> Any:
    name = "D" + str(abs(hash(json.dumps(schema, sort_keys=True))))  # one subject per schema
    return parse_schema_text(json.dumps(_field(schema, name=name)))


@pytest.mark.parametrize(("schema", "value", "why"), DECLINED, ids=[why for _, _, why in DECLINED])
def test_the_serde_writes_declined_values_as_fastavro_does(schema: Any, value: Any, why: str) -> None:
    """fastavro's bytes where it writes the value, else its EncodeError (or its other exception)."""
    schema_file = _schema_file(schema)
    serde = AvroSerde(InMemorySchemaSource())
    try:
        expected: Any = frame_header(1) + encode(schema_file.parsed, {"v": value})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        expected = EncodeError(f"record does not match {schema_file.fullname}: {exc}")
    except Exception as exc:
        expected = exc
    if isinstance(expected, bytes):
        assert serde.encode({"v": value}, schema_file) == expected
        return
    with pytest.raises(type(expected)) as raised:
        serde.encode({"v": value}, schema_file)
    assert str(raised.value) == str(expected)


def test_the_serde_reports_a_missing_field_as_fastavro_does() -> None:
    schema_file = parse_schema_text(json.dumps(_field("long", name="Missing")))
    with pytest.raises(EncodeError, match=r"record does not match t\.Missing: no value and no default for v"):
        AvroSerde(InMemorySchemaSource()).encode({}, schema_file)


@pytest.mark.parametrize("logical", [{"type": "long", "logicalType": "timestamp-millis"},
                                     {"type": "string", "logicalType": "uuid"},
                                     {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}])
def test_schemas_with_logical_types_are_left_to_fastavro(logical: dict[str, Any]) -> None:
    assert write_plan(parse_schema(_field(logical))) is None


def test_every_schema_has_a_plan() -> None:
    for schema in _all_schemas():
        assert write_plan(schema) is not None


RECORDS = {
    "vigil.WindowAggregate": {
        "subject": "web1", "name": "load", "metric": "load1", "window_start": 1767225600000,
        "window_end": 1767225660000, "size_ms": 60000, "count": 12, "sum": 30.5, "min": 0.5, "max": 4.25,
        "mean": 2.54, "last": 3.0, "p50": 2.5, "p95": 4.2, "p99": None, "sketch": b"\x01\x02" * 30},
    "vigil.Status": {
        "subject": "web1", "name": "load", "state": "WARNING", "since": 1767225600000, "last_seen": 1767225660000,
        "last_event_id": "e1", "text": "load is high", "event_count": 1234, "transition_count": 3,
        "flapping": False, "ttl": 30.0, "tags": {"env": "prod", "team": "ops"}},
    "vigil.Alert": {
        "id": "a1", "time": 1767225660000, "subject": "web1", "name": "load", "from_state": "OK",
        "to_state": "WARNING", "severity": 1, "cause_event_id": "e1", "text": "load is high", "flapping": False,
        "tags": {"env": "prod"}, "trace_id": None},
}


@pytest.mark.skipif(not COMPILED_WRITER, reason="the writer runs as Python: the serde uses fastavro alone")
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_serde_writes_with_the_compiled_writer_and_fastavro_writes_the_rest(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    serde = AvroSerde(InMemorySchemaSource())
    schema = builtin_schema(name)
    record = RECORDS[name]
    expected = frame_header(1) + encode(schema.parsed, record)
    fastavro_calls: list[Any] = []
    real = serde_module.schemaless_writer
    monkeypatch.setattr(serde_module, "schemaless_writer", lambda *args: fastavro_calls.append(args) or real(*args))
    data = serde.encode(record, schema)
    assert serde.writer(schema)._plan is not None
    assert (data, fastavro_calls) == (expected, [])
    assert serde.decode_typed(data) == (name, record)
    # a declined record (a bool for a long field): fastavro writes it, as before
    odd = {**record, "time" if "time" in record else "count" if "count" in record else "since": True}
    assert serde.encode(odd, schema) == frame_header(1) + encode(schema.parsed, odd)
    assert len(fastavro_calls) == 1
