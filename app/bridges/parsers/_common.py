"""Helpers every parser shares: decoding JSON, reading fields, times, bounded copies, results."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from app.bridges.errors import ParseError
from app.model.events import Event

__all__ = [
    "MAX_EXTENDED_NODES",
    "MISSING_TAG",
    "PARTIAL_TAG",
    "SURROGATE_ESCAPE",
    "ParseResult",
    "TypedRecord",
    "bounded_json",
    "build_event",
    "datetime_ms",
    "decode_utf8",
    "json_body",
    "load_json",
    "missing_fields",
    "optional_str",
    "parse_rfc3339_ms",
    "partial_tags",
    "pydantic_parse_error",
    "require_mapping",
    "require_str",
    "str_map",
    "tag_text",
]

#: Upper bound on the nodes copied into an event's extended data. JSON bodies are already bounded by
#: the body limit; YAML aliases are not (a "billion laughs" document is small but huge once expanded).
MAX_EXTENDED_NODES = 200_000
_MAX_DEPTH = 64
#: A JSON/YAML escape of a UTF-16 surrogate code unit (the first step to text that is not Unicode).
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\\U0000[dD][89a-fA-F]")
#: Tag set to "partial" on an event some of whose fields could not be read from the input.
PARTIAL_TAG = "vigil.parse"
#: Tag naming those fields, comma-separated (`host,time`).
MISSING_TAG = "vigil.parse.missing"


@dataclass(frozen=True)
class TypedRecord:
    """A record of a registered (non-Vigil) type, to be validated by the sink against its schema."""

    index: int
    type_fullname: str
    record: dict[str, Any]
    field_prefix: str = ""


@dataclass
class ParseResult:
    """What a parser made of one request: the good items, and an error for each bad one.

    Whole-input problems (not JSON, wrong shape) raise ParseError instead; per-item problems are
    collected here so that the valid items of a batch are never lost because of an invalid one.
    """

    events: list[Event] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)
    typed: list[TypedRecord] = field(default_factory=list)


def decode_utf8(data: bytes, *, field_name: str = "body") -> str:
    """Strict UTF-8 decode; the error says at which byte the input stops being UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(field_name, f"not valid UTF-8 (byte {exc.start} is 0x{data[exc.start]:02x})",
                         kind="not_utf8") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: bytes | str, *, field_name: str = "body") -> Any:
    """Decode a JSON document strictly (no NaN/Infinity, no unpaired surrogate escapes)."""
    text = decode_utf8(data, field_name=field_name) if isinstance(data, bytes | bytearray) else data
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ParseError(field_name, f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except ValueError as exc:
        raise ParseError(field_name, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ParseError(field_name, "JSON is nested too deeply") from None
    # "\ud800" is valid JSON syntax but not Unicode: such text could never be written to Kafka.
    # Only bodies with surrogate escapes pay for the check (emoji come as valid pairs).
    if SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError(field_name, "contains an unpaired surrogate escape (\\ud800-\\udfff): "
                                         "not valid Unicode") from None
    return value


def json_body(body: Any, *, field_name: str = "body") -> Any:
    """Raw bytes/text are decoded as JSON; anything else is taken as already decoded."""
    return load_json(body, field_name=field_name) if isinstance(body, bytes | bytearray | str) else body


def tag_text(value: Any) -> str:
    """A scalar as tag text: booleans as true/false (as the tools write them), dates as ISO 8601."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def require_mapping(value: Any, field_name: str) -> Mapping[str, Any]:
    """The value as a mapping, or ParseError naming the field."""
    if not isinstance(value, Mapping):
        raise ParseError(field_name, f"must be an object, got {_type_name(value)}")
    return value


def require_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str:
    """A required non-empty string field."""
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        what = "missing" if value is None else f"must be a non-empty string, got {_type_name(value)}"
        raise ParseError(f"{prefix}{key}", what)
    return value


def optional_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    """An optional string field (numbers and booleans are accepted and written as text)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str | int | float):
        return tag_text(value)
    raise ParseError(f"{prefix}{key}", f"must be a string, got {_type_name(value)}")


def str_map(value: Any, field_name: str) -> dict[str, str]:
    """A flat mapping of text values (labels, tags); scalar values are written as text."""
    if value is None:
        return {}
    mapping = require_mapping(value, field_name)
    out: dict[str, str] = {}
    for key in mapping:
        out[str(key)] = optional_str(mapping, key, f"{field_name}.") or ""
    return out


def datetime_ms(value: datetime) -> int:
    """Milliseconds since the epoch; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_rfc3339_ms(text: Any, field_name: str) -> int:
    """An RFC 3339 / ISO 8601 timestamp (up to nanoseconds, `Z` or offset) in ms since the epoch."""
    if not isinstance(text, str):
        raise ParseError(field_name, f"must be an RFC 3339 timestamp string, got {_type_name(text)}")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ParseError(field_name, f"{text[:64]!r} is not an RFC 3339 timestamp") from None
    try:
        return datetime_ms(parsed)
    except (OverflowError, OSError, ValueError):
        raise ParseError(field_name, f"{text[:64]!r} is out of range") from None


def bounded_json(value: Any, field_name: str, *, max_nodes: int = MAX_EXTENDED_NODES) -> Any:
    """A JSON-safe copy of decoded data (dates as ISO text, keys as text), refusing huge expansions."""
    budget = [max_nodes]

    def copy(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise ParseError(field_name, "too large or nested too deeply to keep")
        if item is None or isinstance(item, bool | int | str):
            return item
        if isinstance(item, float):
            return item if math.isfinite(item) else str(item)
        if isinstance(item, datetime | date):
            return item.isoformat()
        if isinstance(item, bytes | bytearray):
            return bytes(item).decode("utf-8", "replace")
        if isinstance(item, Mapping):
            return {str(k): copy(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list | tuple | set | frozenset):
            return [copy(v, depth + 1) for v in item]
        return str(item)

    return copy(value, 0)


def partial_tags(missing: list[str]) -> dict[str, str]:
    """The tags that say a parse was partial and which fields are missing (none if nothing is)."""
    return {PARTIAL_TAG: "partial", MISSING_TAG: ",".join(missing)} if missing else {}


def missing_fields(event: Event) -> list[str]:
    """The fields a partial parse could not read (empty for a complete one)."""
    if event.tags.get(PARTIAL_TAG) != "partial":
        return []
    return [name for name in event.tags.get(MISSING_TAG, "").split(",") if name]


def build_event(prefix: str, **fields: Any) -> Event:
    """Construct an Event; a model error becomes a ParseError naming the field under `prefix`."""
    try:
        return Event(**fields)
    except ValidationError as exc:
        raise pydantic_parse_error(exc, prefix) from None


def pydantic_parse_error(exc: ValidationError, prefix: str, *, index: int | None = None) -> ParseError:
    """The first problem of a pydantic error as a ParseError with a dotted path (`a.b[2].c`)."""
    err = exc.errors()[0]
    path = prefix.rstrip(".")
    for part in err["loc"]:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "is not a field of a Vigil event"
    return ParseError(path or "body", message, index=index)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
