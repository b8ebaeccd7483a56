"""Encoding what agents send: Vigil models and records with a named schema as Confluent Avro,
bytes as is, strings as UTF-8, anything else as JSON."""

from __future__ import annotations

from typing import Any

import orjson

from app.model.events import _Record
from app.model.schemas import SchemaFile, SchemaFileError, builtin_schema, parse_schema_text, record_name_subject
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient

__all__ = ["OutputEncoder"]


class OutputEncoder:
    def __init__(self, serde: AvroSerde, registry: RegistryClient | None) -> None:
        self.serde = serde
        self.registry = registry
        self._schemas: dict[str, SchemaFile] = {}

    def schema(self, fullname: str) -> SchemaFile:
        schema = self._schemas.get(fullname)
        if schema is None:
            try:
                schema = builtin_schema(fullname)
            except SchemaFileError:
                if self.registry is None:
                    raise
                latest = self.registry.version(record_name_subject(fullname), "latest")
                schema = parse_schema_text(latest.schema, where=f"registry {fullname}")
            self._schemas[fullname] = schema
        return schema

    def value(self, value: Any, schema: str | None) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, _Record):
            return self.serde.encode(value.to_record(), self.schema(value.avro_name))
        if schema is not None:
            return self.serde.encode(value, self.schema(schema))
        if isinstance(value, str):
            return value.encode()
        return orjson.dumps(value)

    @staticmethod
    def key(key: str | bytes | None) -> bytes | None:
        return key.encode() if isinstance(key, str) else key
