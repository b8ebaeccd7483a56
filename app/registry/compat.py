"""Schema validation, canonical form and compatibility levels (pure: no Kafka, no HTTP).

The actual reader/writer rules come from the `avro` package's ReaderWriterCompatibilityChecker
(the port of Java Avro's SchemaCompatibility, which Confluent's registry also uses); this module
only decides which pairs to check for a level and turns the checker's findings into sentences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import avro.name
import avro.schema
import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
)

__all__ = [
    "COMPATIBILITY_LEVELS",
    "DEFAULT_LEVEL",
    "InvalidLevel",
    "InvalidSchema",
    "ParsedSchema",
    "check",
    "check_parsed",
    "json_canonical",
    "normalize_level",
    "parse_schema",
]

#: Confluent's compatibility levels, in the order its error message lists them.
COMPATIBILITY_LEVELS = (
    "NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE",
)
#: The level a registry starts with (Confluent's default too).
DEFAULT_LEVEL = "BACKWARD"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIXED_SIZES = re.compile(r"^expected: (\d+), found: (\d+)$")


class InvalidSchema(ValueError):
    """Schema text is not a valid Avro schema; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid Avro schema: {reason}")
        self.reason = reason


class InvalidLevel(ValueError):
    """Not one of the seven compatibility levels."""

    def __init__(self, value: object) -> None:
        super().__init__(f"invalid compatibility level {value!r}; valid levels are "
                         + ", ".join(COMPATIBILITY_LEVELS))
        self.value = value


def normalize_level(value: object) -> str:
    """The canonical (upper-case) name of a compatibility level; raises InvalidLevel."""
    if isinstance(value, str) and value.strip().upper() in COMPATIBILITY_LEVELS:
        return value.strip().upper()
    raise InvalidLevel(value)


@dataclass(frozen=True)
class ParsedSchema:
    """A validated schema: its text, its canonical form (for equality), its normalized text (what
    `normalize` stores) and the avro object (with referenced types resolved into it)."""

    text: str
    canonical: str
    parsed: Any = field(repr=False, compare=False)
    normalized: str = field(default="", compare=False)


def json_canonical(text: str) -> str:
    """Sorted-key compact JSON of `text` (the text itself if it is not JSON)."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        return text


def parse_schema(text: object, dependencies: Sequence[str] = ()) -> ParsedSchema:
    """Validate Avro schema text (names, types and field defaults); raise InvalidSchema.

    `dependencies` are the texts of the schemas it references (schema references), referenced
    before referencing: their named types are known to the schema, as Confluent's registry does.

    The canonical form is avro's JSON rendering with sorted keys: whitespace, key order and
    namespace spelling do not matter, but everything with meaning (field order, defaults, docs,
    aliases, custom properties) does, so two schemas are "the same" only if they really are.
    A schema with references is compared by its sorted-key JSON instead (plus its references,
    by the caller), because its stored form must be comparable without resolving them.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("the schema must be a non-empty string of Avro JSON")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    names = avro.name.Names()
    named: dict[str, Any] = {}
    try:
        referenced = [avro.schema.make_avsc_object(json.loads(dep), names) for dep in dependencies]
        parsed = avro.schema.make_avsc_object(raw, names)
    except Exception as exc:  # avro raises several unrelated types for bad input
        raise InvalidSchema(str(exc) or type(exc).__name__) from None
    try:
        # avro does not check that defaults match their field types; fastavro does, and
        # fastavro is what Vigil's own readers use, so both must accept the schema.
        for dep in dependencies:
            fastavro.parse_schema(json.loads(dep), named_schemas=named)
        fastavro.parse_schema(raw, named_schemas=named)
    except Exception as exc:
        raise InvalidSchema(str(exc) or type(exc).__name__) from None
    if dependencies:
        known = avro.name.Names()
        for dep_schema in referenced:  # rendered once, so the schema names them instead of inlining them
            dep_schema.to_json(known)
        normalized = json.dumps(parsed.to_json(known), sort_keys=True, separators=(",", ":"))
        return ParsedSchema(text=text.strip(), canonical=json_canonical(text), parsed=parsed, normalized=normalized)
    canonical = json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"))
    return ParsedSchema(text=text.strip(), canonical=canonical, parsed=parsed, normalized=canonical)


def check(new_schema_text: str, existing_texts_oldest_first: Sequence[str], level: str, *,
          labels: Sequence[str] | None = None) -> tuple[bool, list[str]]:
    """Would `new_schema_text` be accepted after the existing versions under `level`?

    BACKWARD: the new schema reads data written with the latest; FORWARD: the latest reads data
    written with the new one; FULL: both. The _TRANSITIVE forms check against every version
    instead of only the latest. Returns (ok, human-readable reasons). `labels` name the existing
    versions in the reasons (default "schema #1", "schema #2", ... oldest first).
    Raises InvalidSchema if the new schema is invalid, InvalidLevel for an unknown level.
    """
    new = parse_schema(new_schema_text)
    existing = [parse_schema(text) for text in existing_texts_oldest_first]
    return check_parsed(new, existing, level, labels=labels)


def check_parsed(new: ParsedSchema, existing: Sequence[ParsedSchema], level: str, *,
                 labels: Sequence[str] | None = None) -> tuple[bool, list[str]]:
    """`check` for schemas already parsed with `parse_schema`."""
    level = normalize_level(level)
    names = list(labels) if labels is not None else [f"schema #{i + 1}" for i in range(len(existing))]
    if len(names) != len(existing):
        raise ValueError(f"{len(names)} labels for {len(existing)} existing schemas")
    if level == "NONE" or not existing:
        return True, []
    pairs = list(zip(existing, names, strict=True))
    if not level.endswith("_TRANSITIVE"):
        pairs = pairs[-1:]
    base = level.removesuffix("_TRANSITIVE")
    messages: list[str] = []
    # Newest first, so the most relevant reasons lead the list.
    for old, name in reversed(pairs):
        if base in ("BACKWARD", "FULL"):
            messages += _problems(reader=new, writer=old, level=level,
                                  who=f"the new schema cannot read data written with {name}")
        if base in ("FORWARD", "FULL"):
            messages += _problems(reader=old, writer=new, level=level,
                                  who=f"{name} cannot read data written with the new schema")
    return not messages, messages


def _problems(*, reader: ParsedSchema, writer: ParsedSchema, level: str, who: str) -> list[str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader.parsed, writer.parsed)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    return [f"{level}: {who}: {detail}" for detail in _details(result, reader.parsed)]


def _details(result: SchemaCompatibilityResult, reader: Any) -> list[str]:
    # The checker keeps messages and locations as two sets, so with several findings they can
    # no longer be paired; with one (the usual case) we can say exactly where and what.
    messages = sorted(result.messages)
    # merge() also unions the root "/" of compatible sub-results; it names no finding.
    locations = sorted(result.locations - {"/"}) or ["/"]
    if len(messages) == 1 and len(locations) == 1:
        if _IDENTIFIER.match(messages[0]):  # the message already names the field
            return [_humanize(messages[0])]
        return [f"{_humanize(messages[0])} (at {_where(locations[0], reader)})"]
    where = ", ".join(_where(loc, reader) for loc in locations)
    return [f"{_humanize(m)}" for m in messages] + [f"problems found at: {where}"]


def _humanize(message: str) -> str:
    """Reword the checker's terse findings so a person knows what to change."""
    if _IDENTIFIER.match(message):
        return (f"field '{message}' has no default value in the reader and is missing in the writer "
                f"(give it a default)")
    sizes = _FIXED_SIZES.match(message)
    if sizes:
        return f"fixed size differs: writer has {sizes.group(1)} bytes, reader has {sizes.group(2)}"
    if message.startswith("expected: "):
        return (f"name differs: the writer's type is named {message.removeprefix('expected: ')} "
                f"(renaming needs an alias for the old name)")
    if message.startswith("{"):
        return f"enum symbols {message} written by the writer are missing in the reader (and it has no default)"
    return message


def _where(location: str, reader: Any) -> str:
    """'/fields/2/type' -> "field 'count' (/fields/2/type)" by walking the reader schema."""
    tokens = [t for t in location.split("/") if t]
    if not tokens:
        # The checker restarts paths inside unions, so "/" under a record means "somewhere inside".
        return "a union inside the schema" if getattr(reader, "type", "") == "record" else "the top-level type"
    path: list[str] = []
    node = reader
    try:
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token == "fields" and i + 1 < len(tokens):
                fld = node.fields[int(tokens[i + 1])]
                path.append(fld.name)
                node = fld.type
                i += 2
                continue
            if token == "items":
                node = node.items
            elif token == "values":
                node = node.values
            i += 1
    except (AttributeError, IndexError, ValueError):
        pass  # best effort: the raw location is always shown
    if not path:
        return location
    return f"field '{'.'.join(path)}' ({location})"
