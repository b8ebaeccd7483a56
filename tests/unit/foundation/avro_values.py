"""Avro schemas and values for the property tests of the compiled Avro reader and writer, which
both check themselves against fastavro."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_writer
from hypothesis import strategies as st

from app.model.schemas import builtin_schema

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas" / "vigil"
BUILTIN = sorted(f"vigil.{p.stem}" for p in SCHEMA_DIR.glob("*.avsc"))

#: every kind of node, named types referenced again, a recursive record, and nesting
EVERY_KIND = parse_schema({
    "type": "record", "name": "Every", "namespace": "t",
    "fields": [
        {"name": "flag", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "b", "type": "bytes"},
        {"name": "s", "type": "string"}, {"name": "nothing", "type": "null"},
        {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}}, {"name": "fx2", "type": "Two"},
        {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "arr", "type": {"type": "array", "items": {"type": "map", "values": "long"}}},
        {"name": "u", "type": ["null", "string", "Color", {"type": "array", "items": "double"}]},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "string"}]}},
        {"name": "next", "type": ["null", "Every"]},
        {"name": "plain", "type": {"type": "string", "avro.java.string": "String"}},
    ]})

#: How a test changes the values of one schema node: (the node's schema, its values) -> values.
Tweak = Callable[[Any, st.SearchStrategy[Any]], st.SearchStrategy[Any]]


def schemas() -> list[Any]:
    """Every schema Vigil ships, parsed, and EVERY_KIND."""
    return [builtin_schema(name).parsed for name in BUILTIN] + [EVERY_KIND]


def encode(schema: Any, value: Any) -> bytes:
    """fastavro's body for a value."""
    buf = io.BytesIO()
    schemaless_writer(buf, schema, value)
    return buf.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included (a float32 NaN read twice is NaN both times)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def values_of(schema: Any, named: dict[str, Any], depth: int = 0, tweak: Tweak | None = None) -> st.SearchStrategy[Any]:
    """Values of a parsed schema (records nest at most 3 deep); `tweak` changes every node's values."""
    strategy = _values(schema, named, depth, tweak)
    return strategy if tweak is None else tweak(named.get(schema, schema) if isinstance(schema, str) else schema,
                                                strategy)


def _values(schema: Any, named: dict[str, Any], depth: int, tweak: Tweak | None) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        branches = [b for b in schema if depth < 3 or b == "null"] or schema[:1]
        return st.one_of(*[values_of(b, named, depth, tweak) for b in branches])
    if isinstance(schema, str) and schema in named:
        return _values(named[schema], named, depth, tweak)
    kind = schema if isinstance(schema, str) else schema["type"]
    ints = {"int": st.integers(-2**31, 2**31 - 1), "long": st.integers(-2**63, 2**63 - 1)}
    if kind in ints:
        return ints[kind]
    simple = {"null": st.none(), "boolean": st.booleans(), "float": st.floats(width=32, allow_nan=False),
              "double": st.floats(), "bytes": st.binary(max_size=20), "string": st.text(max_size=20)}
    if kind in simple:
        return simple[kind]
    if kind in ("record", "error"):
        return st.fixed_dictionaries({f["name"]: values_of(f["type"], named, depth + 1, tweak)
                                      for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(values_of(schema["items"], named, depth + 1, tweak), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), values_of(schema["values"], named, depth + 1, tweak), max_size=4)
    raise AssertionError(f"no strategy for {schema!r}")
