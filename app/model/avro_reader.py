"""A compiled reader for Avro binary bodies, as fast as the worker's per-record decode needs.

fastavro decodes a vigil.Event in about 6 µs, most of it spent walking the schema's dicts per
field; here a schema becomes a tree of `ReadPlan` nodes once, and `read_body` walks that tree over
the bytes. Compiled by mypyc (app.native) it decodes the same record in about 1.3 µs; as plain
Python it would be slower than fastavro, so `AvroSerde` uses it only when compiled.

fastavro stays the reference. A plan exists only for what this reader decodes exactly as fastavro
does (writer schema = reader schema, no logical types: those fastavro converts to other types), and
the reader raises `BodyError` on anything unusual (truncated data, an out-of-range union branch or
enum symbol, overlong varints, trailing bytes, invalid UTF-8): the caller then decodes the message
with fastavro, which returns the same value or the error message users see. The unit tests check
that both agree on every schema Vigil ships and on corrupted bodies.
"""

from __future__ import annotations

import struct
from typing import Any, Final

__all__ = ["BodyError", "ReadPlan", "read_body", "read_plan"]

_NULL: Final = 0
_BOOLEAN: Final = 1
_LONG: Final = 2  # Avro int and long: both zig-zag varints
_FLOAT: Final = 3
_DOUBLE: Final = 4
_BYTES: Final = 5
_STRING: Final = 6
_RECORD: Final = 7
_ENUM: Final = 8
_ARRAY: Final = 9
_MAP: Final = 10
_UNION: Final = 11
_FIXED: Final = 12

_PRIMITIVES: Final = {"null": _NULL, "boolean": _BOOLEAN, "int": _LONG, "long": _LONG, "float": _FLOAT,
                      "double": _DOUBLE, "bytes": _BYTES, "string": _STRING}
_DOUBLE_AT: Final = struct.Struct("<d").unpack_from
_FLOAT_AT: Final = struct.Struct("<f").unpack_from
#: A 64-bit varint has at most 10 bytes: a longer one is corrupt (fastavro decides what to do).
_MAX_SHIFT: Final = 63


class BodyError(Exception):
    """The body is not one this reader decodes exactly like fastavro: decode it with fastavro."""


class ReadPlan:
    """How to read one schema node: its kind, and per kind the field names (record), branches,
    fields, items or values (children), symbols (enum) or size (fixed)."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.names: list[str] = []
        self.children: list[ReadPlan] = []
        self.symbols: list[str] = []
        self.size = 0


def read_plan(schema: Any) -> ReadPlan | None:
    """The plan for a schema parsed by fastavro (`fastavro.parse_schema`), or None when it uses
    something only fastavro reads (logical types, unknown types)."""
    named: dict[str, Any] = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    try:
        return _plan(schema, named, {})
    except _Unsupported:
        return None


class _Unsupported(Exception):
    pass


def _plan(schema: Any, named: dict[str, Any], built: dict[str, ReadPlan]) -> ReadPlan:
    if isinstance(schema, list):
        node = ReadPlan(_UNION)
        node.children = [_plan(branch, named, built) for branch in schema]
        return node
    if isinstance(schema, str):
        kind = _PRIMITIVES.get(schema)
        if kind is not None:
            return ReadPlan(kind)
        if schema in built:  # a named type already planned (also how recursive types end)
            return built[schema]
        if schema in named:
            return _plan(named[schema], named, built)
        raise _Unsupported(schema)
    if not isinstance(schema, dict) or "logicalType" in schema:
        raise _Unsupported(repr(schema))
    type_name = schema.get("type")
    if isinstance(type_name, str) and type_name in _PRIMITIVES:
        return ReadPlan(_PRIMITIVES[type_name])
    if type_name in ("record", "error"):
        node = ReadPlan(_RECORD)
        built[schema["name"]] = node
        node.names = [f["name"] for f in schema["fields"]]
        node.children = [_plan(f["type"], named, built) for f in schema["fields"]]
        return node
    if type_name == "enum":
        node = ReadPlan(_ENUM)
        node.symbols = list(schema["symbols"])
        built[schema["name"]] = node
        return node
    if type_name == "fixed":
        node = ReadPlan(_FIXED)
        node.size = int(schema["size"])
        built[schema["name"]] = node
        return node
    if type_name == "array":
        node = ReadPlan(_ARRAY)
        node.children = [_plan(schema["items"], named, built)]
        return node
    if type_name == "map":
        node = ReadPlan(_MAP)
        node.children = [_plan(schema["values"], named, built)]
        return node
    raise _Unsupported(repr(type_name))


class _Cursor:
    """The body being read and the position in it."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    def long(self) -> int:
        data, pos = self.data, self.pos
        if pos >= self.end:
            raise BodyError("truncated")
        b = data[pos]
        pos += 1
        n = b & 0x7F
        shift = 7
        while b & 0x80:
            if pos >= self.end or shift > _MAX_SHIFT:
                raise BodyError("truncated or overlong varint")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
        self.pos = pos
        return (n >> 1) ^ -(n & 1)

    def take(self, size: int) -> int:
        """Skip `size` bytes; returns where they start."""
        pos = self.pos
        if size < 0 or pos + size > self.end:
            raise BodyError("truncated")
        self.pos = pos + size
        return pos

    def string(self) -> str:
        size = self.long()
        pos = self.take(size)
        try:
            return self.data[pos:pos + size].decode()
        except UnicodeDecodeError as exc:
            raise BodyError("invalid UTF-8") from exc

    def block_count(self) -> int:
        """Items in the next block of an array or map (0: the end)."""
        count = self.long()
        if count < 0:  # a negative count is followed by the block's size in bytes
            self.long()
            return -count
        return count

    def read(self, node: ReadPlan) -> Any:
        kind = node.kind
        # most frequent kinds first
        if kind == _STRING:
            return self.string()
        if kind == _LONG:
            return self.long()
        if kind == _RECORD:
            out: dict[str, Any] = {}
            names, children = node.names, node.children
            for i in range(len(names)):
                out[names[i]] = self.read(children[i])
            return out
        if kind == _DOUBLE:
            return _DOUBLE_AT(self.data, self.take(8))[0]
        if kind == _UNION:
            branch = self.long()
            if branch < 0 or branch >= len(node.children):
                raise BodyError("union branch out of range")
            return self.read(node.children[branch])
        if kind == _NULL:
            return None
        if kind == _MAP:
            values = node.children[0]
            mapping: dict[str, Any] = {}
            count = self.block_count()
            while count:
                for _ in range(count):
                    key = self.string()
                    mapping[key] = self.read(values)
                count = self.block_count()
            return mapping
        if kind == _ENUM:
            index = self.long()
            if index < 0 or index >= len(node.symbols):
                raise BodyError("enum symbol out of range")
            return node.symbols[index]
        if kind == _BOOLEAN:
            return self.data[self.take(1)] != 0
        if kind == _ARRAY:
            items = node.children[0]
            array: list[Any] = []
            count = self.block_count()
            while count:
                for _ in range(count):
                    array.append(self.read(items))
                count = self.block_count()
            return array
        if kind == _FLOAT:
            return _FLOAT_AT(self.data, self.take(4))[0]
        if kind == _BYTES:
            size = self.long()
            pos = self.take(size)
            return self.data[pos:pos + size]
        if kind == _FIXED:
            pos = self.take(node.size)
            return self.data[pos:pos + node.size]
        raise BodyError(f"unknown plan kind {kind}")


def read_body(data: bytes, start: int, plan: ReadPlan) -> Any:
    """The value encoded in data[start:] (all of it) by `plan`'s schema; raises BodyError when the
    body is not one this reader decodes exactly like fastavro."""
    cursor = _Cursor(data, start)
    value = cursor.read(plan)
    if cursor.pos != cursor.end:
        raise BodyError("trailing bytes")
    return value
