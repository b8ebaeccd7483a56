"""Reading the API's query parameters (pure): each reader names the parameter it rejects, so a bad
request answers 400 with `{"error": ..., "parameter": NAME}`.

Times (`since`, `until`) are written as people write them in a URL: milliseconds since the epoch
(13 digits), ISO-8601 (`2024-05-03T10:15:00Z`; no zone means UTC), `now`, or a duration meaning
that long before now (`15m`, `-2h`, `7d`). Page sizes are capped, never refused: a client that asks
for a million rows gets the cap and can see it in the answer's `limit`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from app.durations import DurationError, parse_duration_ms

__all__ = [
    "ParamError",
    "Query",
    "bool_param",
    "check_body",
    "check_known",
    "choice_param",
    "int_param",
    "limit_param",
    "list_param",
    "parse_time",
    "present",
    "tag_params",
    "text_param",
    "time_param",
    "typed_param",
]

#: The query string as aiohttp gives it (a multi-dict: one key may appear several times).
Query = Mapping[str, str]

_EPOCH_MS: Final = re.compile(r"\d{13}")
_TIME_FORMS: Final = ("ms since the epoch (13 digits), ISO-8601 (2024-05-03T10:15:00Z), now, or a duration before "
                      "now (15m, 2h, 7d)")


@dataclass
class ParamError(ValueError):
    """A query parameter or body field is wrong: which one and why (answered as HTTP 400)."""

    parameter: str
    reason: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.reason}"


def _values(query: Query, name: str) -> list[str]:
    getall = getattr(query, "getall", None)
    if getall is not None:
        return [str(v) for v in getall(name, [])]
    value = query.get(name)
    return [] if value is None else [str(value)]


def present(query: Query, name: str) -> bool:
    """Whether the parameter was given at all (even empty)."""
    return bool(_values(query, name))


def text_param(query: Query, name: str, default: str | None = None, *, max_length: int = 1000) -> str | None:
    """The last value of a parameter (None/default when absent or empty); too long is an error."""
    values = _values(query, name)
    value = values[-1] if values else ""
    if value == "":
        return default
    if len(value) > max_length:
        raise ParamError(name, f"longer than {max_length} characters")
    if "\x00" in value:
        raise ParamError(name, "contains a NUL character")
    return value


def typed_param(query: Query, name: str) -> str | None:
    """The last value of a typed parameter (a number, a choice, a boolean): None when absent, and an
    error when present but empty (`limit=` is a mistake, not a request for the default)."""
    values = _values(query, name)
    if not values:
        return None
    if values[-1] == "":
        raise ParamError(name, "empty; leave the parameter out for the default")
    return text_param(query, name)


def list_param(query: Query, name: str, *, max_items: int = 50) -> list[str]:
    """A repeatable parameter, also accepting comma-separated values (`state=CRITICAL,WARNING`); an
    empty value is an error."""
    out: list[str] = []
    for raw in _values(query, name):
        parts = [part.strip() for part in raw.split(",")]
        if not all(parts):
            raise ParamError(name, f"{raw!r}: an empty value")
        out.extend(parts)
    if len(out) > max_items:
        raise ParamError(name, f"at most {max_items} values")
    return out


def int_param(query: Query, name: str, default: int, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer parameter; below `minimum` is an error, above `maximum` is an error too (see
    `limit_param` for the capped kind)."""
    text = typed_param(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ParamError(name, f"{text!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ParamError(name, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ParamError(name, f"must be at most {maximum}")
    return value


def limit_param(query: Query, name: str = "limit", *, default: int, cap: int) -> int:
    """A page size: at least 1; larger than `cap` is cut down to `cap` (not refused)."""
    return min(int_param(query, name, default, minimum=1), cap)


def bool_param(query: Query, name: str, default: bool = False) -> bool:
    """true/false (also 1/0, yes/no)."""
    text = typed_param(query, name)
    if text is None:
        return default
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ParamError(name, f"{text!r}: use true or false")


def choice_param(query: Query, name: str, choices: Sequence[str], default: str | None = None, *,
                 upper: bool = False) -> str | None:
    """One of `choices` (compared upper-cased when `upper`)."""
    text = typed_param(query, name)
    if text is None:
        return default
    value = text.upper() if upper else text
    if value not in choices:
        raise ParamError(name, f"{text!r}: use one of {', '.join(choices)}")
    return value


def tag_params(query: Query, name: str = "tag") -> dict[str, str]:
    """Repeated `tag=KEY=GLOB` filters (every one must match)."""
    out: dict[str, str] = {}
    for raw in _values(query, name):
        key, sep, pattern = raw.partition("=")
        if not sep or not key:
            raise ParamError(name, f"{raw!r}: expected KEY=GLOB, e.g. tag=role=db or tag=env=prod*")
        out[key] = pattern
    if len(out) > 20:
        raise ParamError(name, "at most 20 tag filters")
    return out


def parse_time(text: str, *, now_ms: int) -> int:
    """One time in ms since the epoch (see the module docstring for the forms); ValueError when it
    is none of them."""
    value = text.strip()
    if value.lower() == "now":
        return now_ms
    if _EPOCH_MS.fullmatch(value):
        return int(value)
    if value and (value[0] == "-" or value[0].isdigit()) and not re.match(r"\d{4}-\d{2}", value):
        try:
            return now_ms - parse_duration_ms(value.lstrip("-"))
        except DurationError:
            raise ValueError(f"{text!r} is not a time; use {_TIME_FORMS}") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use {_TIME_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{text!r} is out of range") from None


def time_param(query: Query, name: str, *, default: int, now_ms: int) -> int:
    """A time parameter in ms since the epoch (`default` when absent)."""
    text = typed_param(query, name)
    if text is not None and len(text) > 64:
        raise ParamError(name, "longer than 64 characters")
    if text is None:
        return default
    try:
        return parse_time(text, now_ms=now_ms)
    except ValueError as exc:
        raise ParamError(name, str(exc)) from None


def check_body(body: Any, schema: dict[str, Any]) -> None:
    """A request body against its JSON schema (the OpenAPI document's): the first problem as a
    ParamError naming the field."""
    errors = list(_validator(json.dumps(schema, sort_keys=True)).iter_errors(body))
    if not errors:
        return
    # a problem of one field says more than one of the whole body (a missing `match` or `rule`)
    error = best_match([e for e in errors if e.path] or errors)
    if error.path:
        field = str(error.path[0])
    elif error.validator == "required":
        field = str(error.message).split("'")[1] if "'" in error.message else "body"
    elif error.validator == "additionalProperties":
        extra = sorted(set(body) - set(schema.get("properties", {}))) if isinstance(body, dict) else []
        field = extra[0] if extra else "body"
    elif error.validator in ("anyOf", "oneOf"):
        field = next(iter(error.schema[error.validator][0].get("required", ["body"])), "body")
    else:
        field = "body"
    message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    raise ParamError(field, message)


@lru_cache(maxsize=16)
def _validator(schema_json: str) -> Draft7Validator:
    return Draft7Validator(json.loads(schema_json))


def check_known(query: Query, known: Iterable[str]) -> None:
    """Unknown parameters are refused (a typo like `stat=CRITICAL` would otherwise filter nothing)."""
    allowed = set(known)
    for name in query:
        if name not in allowed:
            raise ParamError(name, f"unknown parameter; this endpoint takes {', '.join(sorted(allowed)) or 'none'}")

