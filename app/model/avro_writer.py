"""A compiled writer for Avro binary bodies, the counterpart of app.model.avro_reader.

fastavro encodes a vigil.WindowAggregate in about 6 µs, most of it spent walking the schema's dicts
and checking types per field; here a schema becomes a tree of plan nodes once (app.model.avro_plan),
and `write_body` walks that tree over the value, collecting the encoded pieces and joining them
once.
Compiled by mypyc (app.native) it writes the same record in about 1.5 µs; as plain Python it is no
faster than fastavro, so `RecordWriter` uses it only when compiled.

fastavro stays the reference. A plan exists only for schemas without logical types (fastavro
converts those values first), and the writer accepts only values it encodes byte for byte as
fastavro does: the exact Python types (a bool is not an int, an int must fit its 32 or 64 bits, a
str subclass is not a str), and in a union only a value whose type one branch alone could take (so
fastavro's branch choice is not in doubt). Anything else raises `WriterDeclined` (an
app.model.avro_plan.Declined), and the caller encodes the record with fastavro, which writes the
same bytes or raises the error users see. Any other exception is a bug here (the serde counts and
logs it). The unit tests check byte equality on every schema Vigil ships and on a schema with
every Avro type.
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
    Unsupported,
    schema_plan,
)

__all__ = ["WritePlan", "WriterDeclined", "write_body", "write_plan"]

# The Python types a value may have here (any other type is declined), for choosing union branches.
_T_NONE: Final = 0
_T_BOOL: Final = 1
_T_INT: Final = 2
_T_FLOAT: Final = 3
_T_STR: Final = 4
_T_BYTES: Final = 5
_T_LIST: Final = 6
_T_DICT: Final = 7
_TYPES: Final = 8
#: Per kind, the value types fastavro's union validation could accept for it (a superset: an
#: ambiguous union is declined, never guessed). Some fastavro versions count bools as numbers;
#: arrays are in `_takes` (bytes are a Sequence of ints: fastavro may take them for an array).
_TAKES: Final = {
    NULL: [_T_NONE], BOOLEAN: [_T_BOOL], INT: [_T_BOOL, _T_INT], LONG: [_T_BOOL, _T_INT],
    FLOAT: [_T_BOOL, _T_INT, _T_FLOAT], DOUBLE: [_T_BOOL, _T_INT, _T_FLOAT], STRING: [_T_STR],
    ENUM: [_T_STR], BYTES: [_T_BYTES], FIXED: [_T_BYTES], MAP: [_T_DICT], RECORD: [_T_DICT],
}

#: The one-byte encodings, so a small varint is a list lookup rather than a new bytes object.
_BYTE: Final = [bytes((i,)) for i in range(256)]
_PACK_DOUBLE: Final = struct.Struct("<d").pack
_PACK_FLOAT: Final = struct.Struct("<f").pack
_INT_MIN: Final = -0x8000_0000
_INT_MAX: Final = 0x7FFF_FFFF
_LONG_MIN: Final = -0x8000_0000_0000_0000
_LONG_MAX: Final = 0x7FFF_FFFF_FFFF_FFFF
#: Below this magnitude an int is a compiled short int: checked against the 64-bit range only above.
_SHORT: Final = 0x1FFF_FFFF_FFFF_FFFF
#: A field's value when the record has none (a dict.get default).
_ABSENT: Final = object()


class WriterDeclined(Declined):
    """The value is not one this writer encodes exactly like fastavro: encode it with fastavro."""


#: How to write a schema (app.model.avro_plan; unions get their `branches` from `write_plan`).
WritePlan = SchemaPlan


def write_plan(schema: Any) -> WritePlan | None:
    """The plan for a schema parsed by fastavro (`fastavro.parse_schema`), or None when it uses
    something only fastavro writes (logical types, unknown types, a union in a union)."""
    plan = schema_plan(schema)
    if plan is None:
        return None
    try:
        _choose_branches(plan, set())
    except Unsupported:
        return None
    return plan


def _choose_branches(node: SchemaPlan, seen: set[int]) -> None:
    """Set the branch per value type of every union in the tree (each node once: trees of
    recursive types have cycles)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.kind == UNION:
        _union_branches(node)
    for child in node.children:
        _choose_branches(child, seen)


def _union_branches(node: SchemaPlan) -> None:
    """A union's branch per value type: the one branch that could take it, or -1 when none or
    several could (fastavro picks the first that validates, or the record with most fields, or a
    double over a float: only an unambiguous branch is surely its choice)."""
    children = node.children
    node.branches = [-1] * _TYPES
    taken = [0] * _TYPES
    for i, child in enumerate(children):
        if child.kind == UNION:
            raise Unsupported("a union in a union")
        for t in _takes(child):
            taken[t] += 1
            node.branches[t] = i
    for t in range(_TYPES):
        if taken[t] != 1:
            node.branches[t] = -1


def _takes(node: WritePlan) -> list[int]:
    """The value types fastavro may validate against this (non-union) node (see _TAKES)."""
    if node.kind != ARRAY:
        return _TAKES[node.kind]
    items = node.children[0]
    item_types = ([t for child in items.children for t in _takes(child)] if items.kind == UNION
                  else _takes(items))
    return [_T_BYTES, _T_LIST] if _T_INT in item_types else [_T_LIST]


def _type_of(value: object) -> int:
    """The value's type among those written here (-1: another, subclasses included)."""
    t = type(value)
    if value is None:
        return _T_NONE
    if t is str:
        return _T_STR
    if t is float:
        return _T_FLOAT
    if t is int:
        return _T_INT
    if t is dict:
        return _T_DICT
    if t is bool:
        return _T_BOOL
    if t is bytes:
        return _T_BYTES
    if t is list:
        return _T_LIST
    return -1


def _varint(parts: list[bytes], n: int) -> None:
    """Append a non-negative int as a varint."""
    byte = _BYTE
    while n > 0x7F:
        parts.append(byte[(n & 0x7F) | 0x80])
        n >>= 7
    parts.append(byte[n])


def _long(parts: list[bytes], n: int) -> None:
    """Append a signed 64-bit int, zig-zag encoded."""
    _varint(parts, n << 1 if n >= 0 else ((-n) << 1) - 1)


def _string(parts: list[bytes], value: object) -> None:
    """Append a str: its UTF-8 length, then its UTF-8 bytes."""
    if type(value) is not str:
        raise WriterDeclined("not a str")
    try:
        data = value.encode()
    except UnicodeEncodeError as exc:  # lone surrogates: fastavro fails
        raise WriterDeclined("not UTF-8 encodable") from exc
    _varint(parts, len(data) << 1)
    parts.append(data)


def _write(parts: list[bytes], value: object, node: WritePlan) -> None:
    kind = node.kind
    # most frequent kinds first
    if kind == STRING:
        _string(parts, value)
        return
    if kind == LONG:
        if type(value) is not int:  # a bool is declined too
            raise WriterDeclined("not an int")
        if (value > _SHORT or value < -_SHORT) and (value > _LONG_MAX or value < _LONG_MIN):
            raise WriterDeclined("out of the long range")
        _long(parts, value)
        return
    if kind == DOUBLE:
        if type(value) is float:
            parts.append(_PACK_DOUBLE(value))
            return
        if type(value) is int:  # fastavro writes float(value): the same bytes
            try:
                parts.append(_PACK_DOUBLE(float(value)))
            except OverflowError as exc:
                raise WriterDeclined("too large for a double") from exc
            return
        raise WriterDeclined("not a float")
    if kind == RECORD:
        if type(value) is not dict:
            raise WriterDeclined("not a dict")
        if "-type" in value:  # fastavro's union validation reads it as the record's name
            raise WriterDeclined("a -type key")
        names, children = node.names, node.children
        for i in range(len(names)):
            field = value.get(names[i], _ABSENT)
            if field is _ABSENT:
                if not node.fills[i]:
                    raise WriterDeclined("no value for a field without a default")
                field = node.fill_values[i]
            _write(parts, field, children[i])
        return
    if kind == UNION:
        t = _type_of(value)
        branch = node.branches[t] if t >= 0 else -1
        if branch < 0:
            raise WriterDeclined("no single union branch for the value's type")
        _varint(parts, branch << 1)
        _write(parts, value, node.children[branch])
        return
    if kind == NULL:
        if value is not None:
            raise WriterDeclined("not None")
        return
    if kind == MAP:
        if type(value) is not dict:
            raise WriterDeclined("not a dict")
        if value:
            values = node.children[0]
            _varint(parts, len(value) << 1)  # one block: its count, then the items
            for key, item in value.items():
                _string(parts, key)
                _write(parts, item, values)
        parts.append(_BYTE[0])
        return
    if kind == INT:
        if type(value) is not int:
            raise WriterDeclined("not an int")
        if value > _INT_MAX or value < _INT_MIN:
            raise WriterDeclined("out of the int range")
        _long(parts, value)
        return
    if kind == BOOLEAN:
        if type(value) is not bool:
            raise WriterDeclined("not a bool")
        parts.append(_BYTE[1] if value else _BYTE[0])
        return
    if kind == ENUM:
        if type(value) is not str:
            raise WriterDeclined("not a str")
        index = node.symbol_index.get(value, -1)
        if index < 0:
            raise WriterDeclined("not a symbol")
        _varint(parts, index << 1)
        return
    if kind == ARRAY:
        if type(value) is not list:
            raise WriterDeclined("not a list")
        if value:
            items = node.children[0]
            _varint(parts, len(value) << 1)
            for item in value:
                _write(parts, item, items)
        parts.append(_BYTE[0])
        return
    if kind == FLOAT:
        if type(value) is float:
            number = value
        elif type(value) is int:
            try:
                number = float(value)
            except OverflowError as exc:
                raise WriterDeclined("too large for a float") from exc
        else:
            raise WriterDeclined("not a float")
        try:
            parts.append(_PACK_FLOAT(number))
        except OverflowError as exc:  # beyond the float range: fastavro writes infinity
            raise WriterDeclined("too large for a float") from exc
        return
    if kind == BYTES:
        if type(value) is not bytes:
            raise WriterDeclined("not bytes")
        _varint(parts, len(value) << 1)
        parts.append(value)
        return
    if kind == FIXED:
        if type(value) is not bytes or len(value) != node.size:
            raise WriterDeclined("not bytes of the fixed size")
        parts.append(value)
        return
    raise WriterDeclined("unknown plan kind")


def write_body(value: Any, plan: WritePlan, prefix: bytes = b"") -> bytes:
    """`prefix` followed by the Avro encoding of `value` by `plan`'s schema: the bytes
    `fastavro.schemaless_writer` writes. Raises WriterDeclined when the value is not one this
    writer encodes exactly like fastavro (fastavro then decides: the same bytes, or its error)."""
    parts: list[bytes] = [prefix]
    _write(parts, value, plan)
    return b"".join(parts)
