"""Value codecs for tables: how state values become changelog/RocksDB bytes and back."""

from __future__ import annotations

import io
from typing import Any, Protocol

import orjson
from fastavro import schemaless_reader, schemaless_writer

from app.model.schemas import SchemaFile, builtin_schema, parse_schema_text

__all__ = ["AvroCodec", "Codec", "JsonCodec", "codec_for"]


class Codec(Protocol):
    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON via orjson (fast; dicts, lists, str, int, float, bool, None)."""

    name = "json"

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class AvroCodec:
    """Schemaless Avro with a declared record schema (no registry: the table owns its schema)."""

    name = "avro"

    def __init__(self, schema: SchemaFile | str) -> None:
        if isinstance(schema, str):
            schema = builtin_schema(schema) if not schema.lstrip().startswith("{") else parse_schema_text(schema)
        self.schema = schema

    def encode(self, value: Any) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, self.schema.parsed, value)
        return buf.getvalue()

    def decode(self, data: bytes) -> Any:
        return schemaless_reader(io.BytesIO(data), self.schema.parsed, None)


def codec_for(spec: str | Codec | SchemaFile | None) -> Codec:
    """'json' (default), an Avro full name / schema JSON / SchemaFile, or a Codec instance."""
    if spec is None or spec == "json":
        return JsonCodec()
    if isinstance(spec, SchemaFile | str):
        return AvroCodec(spec)
    return spec
