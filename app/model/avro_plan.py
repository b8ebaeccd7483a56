"""A schema parsed by fastavro as a tree of `SchemaPlan` nodes: what the compiled reader and writer
(app.model.avro_reader, app.model.avro_writer) walk instead of fastavro's dicts. Built once per
schema; named types are planned once and referenced again, so recursive types are cycles.

Only what both encode and decode exactly as fastavro does gets a plan: a schema with a logical
type (fastavro converts those values) or an unknown type has none (`schema_plan` returns None).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["ARRAY", "BOOLEAN", "BYTES", "DOUBLE", "ENUM", "FIXED", "FLOAT", "INT", "LONG", "MAP", "NULL", "RECORD",
           "STRING", "UNION", "Declined", "SchemaPlan", "schema_plan"]

NULL: Final = 0
BOOLEAN: Final = 1
INT: Final = 2
LONG: Final = 3
FLOAT: Final = 4
DOUBLE: Final = 5
BYTES: Final = 6
STRING: Final = 7
RECORD: Final = 8
ENUM: Final = 9
ARRAY: Final = 10
MAP: Final = 11
UNION: Final = 12
FIXED: Final = 13

_PRIMITIVES: Final = {"null": NULL, "boolean": BOOLEAN, "int": INT, "long": LONG, "float": FLOAT,
                      "double": DOUBLE, "bytes": BYTES, "string": STRING}


class SchemaPlan:
    """One schema node: its kind, and per kind the field names, children (fields, branches, items
    or values), symbols and their indexes (enum), size (fixed); for a record's fields, whether a
    missing one can be filled and with what (fastavro writes its default, or null where the type
    allows it); for a union, the branch a writer takes per value type (set by the writer)."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.names: list[str] = []
        self.children: list[SchemaPlan] = []
        self.fills: list[bool] = []
        self.fill_values: list[Any] = []
        self.symbols: list[str] = []
        self.symbol_index: dict[str, int] = {}
        self.size = 0
        self.branches: list[int] = []


class Declined(Exception):
    """The compiled reader or writer leaves this body or value to fastavro, which decodes or encodes
    it the same way or raises the error users see. The one exception they raise on purpose: any
    other is a bug in them (app.model.serde counts and logs it). The message is a short fixed
    reason, used as a counter label."""


class Unsupported(Exception):
    """The schema uses something only fastavro handles."""


def schema_plan(schema: Any) -> SchemaPlan | None:
    """The plan of a schema parsed by fastavro (`fastavro.parse_schema`), or None when it uses
    something only fastavro handles (logical types, unknown types)."""
    named: dict[str, Any] = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    try:
        return _plan(schema, named, {})
    except Unsupported:
        return None


def _plan(schema: Any, named: dict[str, Any], built: dict[str, SchemaPlan]) -> SchemaPlan:
    if isinstance(schema, list):
        node = SchemaPlan(UNION)
        node.children = [_plan(branch, named, built) for branch in schema]
        return node
    if isinstance(schema, str):
        kind = _PRIMITIVES.get(schema)
        if kind is not None:
            return SchemaPlan(kind)
        if schema in built:  # a named type already planned (also how recursive types end)
            return built[schema]
        if schema in named:
            return _plan(named[schema], named, built)
        raise Unsupported(schema)
    if not isinstance(schema, dict) or "logicalType" in schema:
        raise Unsupported(repr(schema))
    type_name = schema.get("type")
    if isinstance(type_name, str) and type_name in _PRIMITIVES:
        return SchemaPlan(_PRIMITIVES[type_name])
    if type_name in ("record", "error"):
        node = SchemaPlan(RECORD)
        built[schema["name"]] = node  # before the fields: they may refer to it
        for f in schema["fields"]:
            node.names.append(f["name"])
            node.children.append(_plan(f["type"], named, built))
            # fastavro writes a missing field's default; without one, null if the type allows it
            # ("null", or a union with "null"), else it fails
            node.fills.append("default" in f or f["type"] == "null"
                              or (isinstance(f["type"], list) and "null" in f["type"]))
            node.fill_values.append(f.get("default"))
        return node
    if type_name == "enum":
        node = SchemaPlan(ENUM)
        node.symbols = list(schema["symbols"])
        for i, symbol in enumerate(node.symbols):
            node.symbol_index.setdefault(symbol, i)  # fastavro: list.index, the first one
        built[schema["name"]] = node
        return node
    if type_name == "fixed":
        node = SchemaPlan(FIXED)
        node.size = int(schema["size"])
        built[schema["name"]] = node
        return node
    if type_name in ("array", "map"):
        node = SchemaPlan(ARRAY if type_name == "array" else MAP)
        node.children = [_plan(schema["items" if type_name == "array" else "values"], named, built)]
        return node
    raise Unsupported(repr(type_name))
