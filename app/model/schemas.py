"""Avro schema files (.avsc): one record per file under schemas/, namespace = folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException

from app.packaged import data_path

__all__ = [
    "BUILTIN_SCHEMAS_DIR",
    "SchemaFile",
    "SchemaFileError",
    "builtin_schema",
    "canonical_json",
    "load_schema_dir",
    "load_schema_file",
    "parse_schema_text",
    "record_name_subject",
]

#: Vigil's own record types: the repository's schemas/ folder, packaged in a wheel (app.packaged).
BUILTIN_SCHEMAS_DIR = data_path("schemas")


class SchemaFileError(Exception):
    """A schema file is unreadable or not a valid Avro record schema."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def canonical_json(schema: Any) -> str:
    """Compact, key-sorted JSON text of a schema: the form we register and compare."""
    return json.dumps(schema, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class SchemaFile:
    """One parsed record schema."""

    fullname: str
    text: str  # canonical JSON registered with the registry
    parsed: Any = field(repr=False, compare=False)
    path: str = ""

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.parsed.get("fields", [])]


def parse_schema_text(text: str, *, where: str = "<schema>") -> SchemaFile:
    """Parse Avro schema JSON text into a SchemaFile; raise SchemaFileError naming `where`."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(where, f"not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaFileError(where, "top level must be an Avro record ({\"type\": \"record\", ...})")
    try:
        parsed = fastavro.parse_schema(raw)
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaFileError(where, f"not a valid Avro schema: {exc}") from exc
    namespace = raw.get("namespace")
    name = raw["name"]
    fullname = name if "." in name or not namespace else f"{namespace}.{name}"
    return SchemaFile(fullname=fullname, text=canonical_json(raw), parsed=parsed, path=where)


def load_schema_file(path: Path) -> SchemaFile:
    """Read and parse one .avsc file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SchemaFileError(path, exc.strerror or str(exc)) from exc
    return parse_schema_text(text, where=str(path))


def load_schema_dir(directory: Path) -> dict[str, SchemaFile]:
    """All .avsc files under a folder (recursively), by full name; duplicates are an error."""
    found: dict[str, SchemaFile] = {}
    for path in sorted(directory.rglob("*.avsc")):
        schema = load_schema_file(path)
        if schema.fullname in found:
            raise SchemaFileError(path, f"record {schema.fullname} is also defined in {found[schema.fullname].path}")
        found[schema.fullname] = schema
    return found


_builtin_cache: dict[str, SchemaFile] = {}


def builtin_schema(fullname: str) -> SchemaFile:
    """One of Vigil's own schemas by full name, e.g. 'vigil.Event'."""
    if not _builtin_cache:
        _builtin_cache.update(load_schema_dir(BUILTIN_SCHEMAS_DIR))
    try:
        return _builtin_cache[fullname]
    except KeyError:
        raise SchemaFileError(BUILTIN_SCHEMAS_DIR, f"no built-in schema named {fullname}") from None


def record_name_subject(fullname: str) -> str:
    """Confluent RecordNameStrategy: the subject is the record's full name."""
    return fullname
