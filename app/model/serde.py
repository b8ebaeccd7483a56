"""Avro (de)serialisation in the Confluent wire format: magic byte 0, 4-byte schema id, Avro body.

Writers register their schema once (record-name subject strategy) and cache the id; readers fetch
a writer schema by id once and cache the parsed form, so the hot path is one dict lookup plus
one read: by the compiled reader (app.model.avro_reader) when it is compiled, else fastavro's
schemaless reader. fastavro decides whenever the compiled reader declines a body, so both give
the same records and the same errors. Encoding is the same: the compiled writer
(app.model.avro_writer) when compiled, fastavro for everything it declines.

The compiled codec declines with one exception type (app.model.avro_plan.Declined); each decline
is counted in `AvroSerde.stats` by reason. Anything else it raises is a bug in it: fastavro still
handles that record (a bug must not lose data), and the stats count it apart and log it at ERROR
once per schema (app.model.codec_stats), so it cannot hide as a silent slow path.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer

from app.model import avro_reader, avro_writer
from app.model.avro_plan import Declined
from app.model.avro_reader import ReadPlan, read_body, read_plan
from app.model.avro_writer import WritePlan, write_body, write_plan
from app.model.codec_stats import CodecStats
from app.model.schemas import SchemaFile, SchemaFileError, parse_schema_text, record_name_subject
from app.native import is_compiled
from app.registry.errors import RegistryError

__all__ = [
    "COMPILED_READER",
    "COMPILED_WRITER",
    "MAGIC_BYTE",
    "AvroSerde",
    "CodecStats",
    "DecodeError",
    "EncodeError",
    "RecordWriter",
    "SchemaSource",
    "SerdeError",
    "frame_header",
    "schema_id_of",
]

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
#: Whether app.model.avro_reader runs compiled (app.native): as plain Python it is slower than fastavro.
COMPILED_READER = is_compiled(avro_reader)
#: Whether app.model.avro_writer runs compiled: the same reason, for encoding.
COMPILED_WRITER = is_compiled(avro_writer)


class SerdeError(Exception):
    """Base of (de)serialisation errors."""


class DecodeError(SerdeError):
    """A message could not be decoded; names where it came from and why."""

    def __init__(self, reason: str, *, topic: str | None = None, partition: int | None = None,
                 offset: int | None = None, schema_id: int | None = None) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.schema_id = schema_id
        where = f"{topic}[{partition}]@{offset}" if topic is not None else "message"
        super().__init__(f"cannot decode {where}: {reason}")


class EncodeError(SerdeError):
    """A record does not match its schema (names the schema and the problem)."""


class SchemaSource(Protocol):
    """What the serde needs from a schema registry. Both raise app.registry.errors.RegistryError:
    `schema_by_id` a 404/40403 one for an id that does not exist (only that makes a record
    undecodable), a retriable one when the registry cannot answer now."""

    def register(self, subject: str, schema: str) -> int: ...

    def schema_by_id(self, schema_id: int) -> str: ...


def frame_header(schema_id: int) -> bytes:
    """The 5-byte Confluent frame prefix for a schema id."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def schema_id_of(data: bytes) -> int:
    """Schema id of a framed message (raises DecodeError on bad framing)."""
    if len(data) < 5:
        raise DecodeError(f"message is {len(data)} bytes, shorter than the 5-byte frame header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise DecodeError(f"wrong magic byte {magic} (expected 0: not Confluent-framed Avro)")
    return schema_id


@dataclass
class RecordWriter:
    """Encodes dicts for one registered schema: by the compiled writer (app.model.avro_writer)
    when it is compiled, else, and for every record it declines, by fastavro (same bytes, and
    fastavro's errors)."""

    schema: SchemaFile
    schema_id: int
    #: where fallbacks to fastavro are counted (the serde's, when it made this writer)
    stats: CodecStats = field(default_factory=lambda: _new_stats(), repr=False, compare=False)
    _prefix: bytes = field(init=False, repr=False)
    #: the compiled writer's plan, None where fastavro writes (see COMPILED_WRITER, write_plan)
    _plan: WritePlan | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._prefix = frame_header(self.schema_id)
        self._plan = write_plan(self.schema.parsed) if COMPILED_WRITER else None

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._plan is not None:
            try:
                return write_body(record, self._plan, self._prefix)
            except Declined as exc:  # fastavro decides: the same bytes, or its error
                self.stats.declined("encode", exc)
            except Exception as exc:  # a bug in the compiled writer: counted, logged; fastavro writes
                self.stats.bug("encode", self.schema.fullname, exc)
        buf = io.BytesIO()
        buf.write(self._prefix)
        try:
            schemaless_writer(buf, self.schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"record does not match {self.schema.fullname}: {exc}") from exc
        return buf.getvalue()


@dataclass
class _Reader:
    parsed: Any
    fullname: str
    #: the compiled reader's plan, None where fastavro reads (see COMPILED_READER, read_plan)
    plan: ReadPlan | None

    @classmethod
    def of(cls, schema: SchemaFile) -> _Reader:
        return cls(schema.parsed, schema.fullname, read_plan(schema.parsed) if COMPILED_READER else None)


def _new_stats() -> CodecStats:
    return CodecStats(compiled_reader=COMPILED_READER, compiled_writer=COMPILED_WRITER)


class AvroSerde:
    """Confluent-framed Avro with per-id caches, backed by any SchemaSource."""

    def __init__(self, registry: SchemaSource) -> None:
        self.registry = registry
        #: fallbacks of the compiled codec to fastavro, and its bugs (for /metrics)
        self.stats = _new_stats()
        self._readers: dict[int, _Reader] = {}
        self._writers: dict[str, RecordWriter] = {}

    def writer(self, schema: SchemaFile) -> RecordWriter:
        """A writer for this schema, registering it under its record-name subject on first use."""
        w = self._writers.get(schema.text)
        if w is None:
            schema_id = self.registry.register(record_name_subject(schema.fullname), schema.text)
            w = self._writers[schema.text] = RecordWriter(schema, schema_id, self.stats)
            if schema_id not in self._readers:
                self._readers[schema_id] = _Reader.of(schema)
        return w

    def encode(self, record: dict[str, Any], schema: SchemaFile) -> bytes:
        """Frame and encode one record."""
        return self.writer(schema).encode(record)

    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is None:
            try:
                text = self.registry.schema_by_id(schema_id)
            except RegistryError as exc:
                if not exc.is_schema_not_found():
                    raise  # the registry failed, not the record: the caller retries it later
                raise DecodeError(f"unknown schema id {schema_id}: {exc}", schema_id=schema_id) from exc
            try:
                schema = parse_schema_text(text, where=f"schema id {schema_id}")
            except SchemaFileError as exc:
                raise DecodeError(exc.reason, schema_id=schema_id) from exc
            reader = self._readers[schema_id] = _Reader.of(schema)
        return reader

    def decode_typed(self, data: bytes | None, *, topic: str | None = None, partition: int | None = None,
                     offset: int | None = None) -> tuple[str, dict[str, Any]]:
        """Decode one framed message into (record full name, record dict). Raises DecodeError when
        the record is bad for good (dead-letter it), RegistryError when its writer schema cannot be
        fetched now (keep it and retry: the record may be fine)."""
        # Fast path (known schema id, well-formed body); anything unusual takes the checked path.
        if data is not None and len(data) > 5 and data[0] == MAGIC_BYTE:
            reader = self._readers.get(int.from_bytes(data[1:5], "big"))
            if reader is not None and reader.plan is not None:
                try:
                    return reader.fullname, read_body(data, 5, reader.plan)
                except Declined as exc:  # fastavro decides: the record, or the error users see
                    self.stats.declined("decode", exc)
                except Exception as exc:  # a bug in the compiled reader: counted, logged; fastavro reads
                    self.stats.bug("decode", reader.fullname, exc)
            elif reader is not None:
                buf = io.BytesIO(data)
                buf.seek(5)
                record: Any
                try:
                    record = schemaless_reader(buf, reader.parsed, None)
                except Exception:
                    record = None
                if record is not None and buf.tell() == len(data):
                    return reader.fullname, record
        return self._decode_checked(data, topic, partition, offset)

    def _decode_checked(self, data: bytes | None, topic: str | None, partition: int | None,
                        offset: int | None) -> tuple[str, dict[str, Any]]:
        if data is None:
            raise DecodeError("message has no value (tombstone)", topic=topic, partition=partition, offset=offset)
        try:
            schema_id = schema_id_of(data)
            reader = self._reader(schema_id)
        except DecodeError as exc:
            raise DecodeError(exc.reason, topic=topic, partition=partition, offset=offset,
                              schema_id=exc.schema_id) from exc
        buf = io.BytesIO(data)
        buf.seek(5)
        record: Any
        try:
            record = schemaless_reader(buf, reader.parsed, None)
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"body does not match schema {reader.fullname} (id {schema_id}): "
                              f"{type(exc).__name__}: {exc}", topic=topic, partition=partition,
                              offset=offset, schema_id=schema_id) from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after a {reader.fullname} record",
                              topic=topic, partition=partition, offset=offset, schema_id=schema_id)
        return reader.fullname, record

    def decode(self, data: bytes | None, *, topic: str | None = None, partition: int | None = None,
               offset: int | None = None) -> dict[str, Any]:
        """Decode one framed message into its record dict."""
        return self.decode_typed(data, topic=topic, partition=partition, offset=offset)[1]

    def type_of(self, data: bytes) -> str:
        """Full record name of a framed message without decoding its body."""
        return self._reader(schema_id_of(data)).fullname
