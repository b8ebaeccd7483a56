"""A compiled reader for Avro binary bodies, as fast as the worker's per-record decode needs.

fastavro decodes a vigil.Event in about 6 µs, most of it spent walking the schema's dicts per
field; here a schema becomes a tree of plan nodes once (app.model.avro_plan), and `read_body`
walks that tree over the bytes. Compiled by mypyc (app.native) it decodes the same record in about 1.3 µs; as plain
Python it would be slower than fastavro, so `AvroSerde` uses it only when compiled.

fastavro stays the reference. A plan exists only for what this reader decodes exactly as fastavro
does (writer schema = reader schema, no logical types: those fastavro converts to other types), and
the reader raises `BodyError` (an app.model.avro_plan.Declined) on anything unusual (truncated
data, an out-of-range union branch or enum symbol, overlong varints, trailing bytes, invalid
UTF-8): the caller then decodes the message with fastavro, which returns the same value or the
error message users see. Any other exception is a bug here (the serde counts and logs it). The
unit tests check that both agree on every schema Vigil ships and on corrupted bodies.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from app.model.avro_plan import (
    ARRAY,
    BOOLEAN,
    BYTES,
    DOUBLE,
    ENUM,
    FIXED,
    FLOAT,
    INT,
    LONG,
    MAP,
    NULL,
    RECORD,
    STRING,
    UNION,
    Declined,
    SchemaPlan,
    schema_plan,
)

__all__ = ["BodyError", "ReadPlan", "read_body", "read_plan"]

_DOUBLE_AT: Final = struct.Struct("<d").unpack_from
_FLOAT_AT: Final = struct.Struct("<f").unpack_from
#: A 64-bit varint has at most 10 bytes, the 10th holding one bit. Anything longer or wider is
#: corrupt, and fastavro's C reader wraps it to 64 bits: it decides what such a body means.
_LAST_SHIFT: Final = 63

#: How to read a schema (app.model.avro_plan).
ReadPlan = SchemaPlan


class BodyError(Declined):
    """The body is not one this reader decodes exactly like fastavro: decode it with fastavro."""


def read_plan(schema: Any) -> ReadPlan | None:
    """The plan for a schema parsed by fastavro (`fastavro.parse_schema`), or None when it uses
    something only fastavro reads (logical types, unknown types)."""
    return schema_plan(schema)


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
            if pos >= self.end or shift > _LAST_SHIFT:
                raise BodyError("truncated or overlong varint")
            b = data[pos]
            pos += 1
            if shift == _LAST_SHIFT and b > 1:
                raise BodyError("varint wider than 64 bits")
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

    def sized(self) -> bytes:
        """A length-prefixed byte string (Avro bytes, and a string's UTF-8)."""
        size = self.long()
        pos = self.take(size)
        return self.data[pos:pos + size]

    def string(self) -> str:
        try:
            return self.sized().decode()
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
        if kind == STRING:
            return self.string()
        if kind in (LONG, INT):
            return self.long()
        if kind == RECORD:
            out: dict[str, Any] = {}
            names, children = node.names, node.children
            for i in range(len(names)):
                out[names[i]] = self.read(children[i])
            return out
        if kind == DOUBLE:
            return _DOUBLE_AT(self.data, self.take(8))[0]
        if kind == UNION:
            branch = self.long()
            if branch < 0 or branch >= len(node.children):
                raise BodyError("union branch out of range")
            return self.read(node.children[branch])
        if kind == NULL:
            return None
        if kind == MAP:
            values = node.children[0]
            mapping: dict[str, Any] = {}
            count = self.block_count()
            while count:
                for _ in range(count):
                    key = self.string()
                    mapping[key] = self.read(values)
                count = self.block_count()
            return mapping
        if kind == ENUM:
            index = self.long()
            if index < 0 or index >= len(node.symbols):
                raise BodyError("enum symbol out of range")
            return node.symbols[index]
        if kind == BOOLEAN:
            return self.data[self.take(1)] != 0
        if kind == ARRAY:
            items = node.children[0]
            array: list[Any] = []
            count = self.block_count()
            while count:
                for _ in range(count):
                    array.append(self.read(items))
                count = self.block_count()
            return array
        if kind == FLOAT:
            return _FLOAT_AT(self.data, self.take(4))[0]
        if kind == BYTES:
            return self.sized()
        if kind == FIXED:
            pos = self.take(node.size)
            return self.data[pos:pos + node.size]
        raise BodyError("unknown plan kind")


def read_body(data: bytes, start: int, plan: ReadPlan) -> Any:
    """The value encoded in data[start:] (all of it) by `plan`'s schema; raises BodyError when the
    body is not one this reader decodes exactly like fastavro."""
    cursor = _Cursor(data, start)
    value = cursor.read(plan)
    if cursor.pos != cursor.end:
        raise BodyError("trailing bytes")
    return value
