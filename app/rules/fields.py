"""Reading event fields by the keys rules use (`subject`, `tags.k`, `metrics.k`, `data.a.b`, `type`).

One accessor serves `match`, `group_by` and register metrics, so a key means the same everywhere.
Accessors never raise: an absent field (or unparseable `extended` JSON) reads as `MISSING`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from app.rules.source import did_you_mean

__all__ = [
    "EVENT_TYPE",
    "MISSING",
    "TOP_LEVEL_FIELDS",
    "FieldRef",
    "as_number",
    "as_text",
    "event_data",
    "event_ref",
    "group_key",
    "group_value",
    "metric_getter",
    "parse_field",
]

#: Avro full name of the built-in event record; its custom data lives in the `extended` JSON string.
EVENT_TYPE: Final = "vigil.Event"

#: Plain top-level keys (besides `type`, `tags.*`, `metrics.*`, `data.*`). Alert fields are here
#: too because status rules match and group transitions with the same keys.
TOP_LEVEL_FIELDS: Final = frozenset({
    "subject", "name", "kind", "origin", "severity", "text", "id", "time", "trace_id", "ttl",
    "from_state", "to_state", "cause_event_id",
})
_PREFIXES: Final = ("tags.", "metrics.", "data.")


class _Missing:
    """The value of a field that is not there (distinct from a present `null`)."""

    _instance: ClassVar[_Missing | None] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Getter = Callable[[Mapping[str, Any], str], Any]


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A parsed field key and its accessor `(event, event_type) -> value | MISSING`."""

    key: str
    get: Getter


# Parsing `extended` once per event matters: every `data.*` key of every rule reads it. Strings are
# immutable, so "same string object as last time" safely means "same parse result".
_last_extended: tuple[str, Any] = ("", MISSING)


def _parse_extended(raw: Any) -> Any:
    global _last_extended
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, str):
        return MISSING
    cached_raw, cached = _last_extended
    if cached_raw is raw:
        return cached
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = MISSING
    _last_extended = (raw, parsed)
    return parsed


def event_data(event: Mapping[str, Any], event_type: str) -> Any:
    """The custom data of an event: parsed `extended` for vigil.Event, the record itself otherwise."""
    if event_type == EVENT_TYPE:
        return _parse_extended(event.get("extended"))
    return event


def _walk(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _top_level(name: str) -> Getter:
    def get(event: Mapping[str, Any], event_type: str) -> Any:
        return event.get(name, MISSING)

    return get


def _in_map(container: str, name: str) -> Getter:
    def get(event: Mapping[str, Any], event_type: str) -> Any:
        values = event.get(container)
        return values.get(name, MISSING) if isinstance(values, Mapping) else MISSING

    return get


def _in_data(path: tuple[str, ...]) -> Getter:
    def get(event: Mapping[str, Any], event_type: str) -> Any:
        return _walk(event_data(event, event_type), path)

    return get


def _event_type(event: Mapping[str, Any], event_type: str) -> Any:
    return event_type


def parse_field(key: Any) -> FieldRef | str:
    """A FieldRef for a rule key, or an error message saying which keys exist."""
    if not isinstance(key, str):
        return f"field key must be a string, got {key!r}"
    if key == "type":
        return FieldRef(key, _event_type)
    if key in TOP_LEVEL_FIELDS:
        return FieldRef(key, _top_level(key))
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if not rest or (prefix == "data." and any(not part for part in rest.split("."))):
                return f"`{key}` needs a name after `{prefix}` (e.g. `{prefix}region`)"
            if prefix == "data.":
                return FieldRef(key, _in_data(tuple(rest.split("."))))
            # Tag and metric names may contain dots: everything after the prefix is the name.
            return FieldRef(key, _in_map(prefix[:-1], rest))
    known = sorted(TOP_LEVEL_FIELDS | {"type"})
    return (f"unknown field `{key}`{did_you_mean(key, known)}; use one of {', '.join(known)}, "
            "or tags.<name>, metrics.<name>, data.<path>")


def as_number(value: Any) -> float | None:
    """The value as a float (numbers and numeric strings), else None; bools are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except (ValueError, OverflowError):  # not numeric, or an int too large for a float
            return None
    return None


def as_text(value: Any) -> str | None:
    """The value as match text (strings as-is, 2.0 as "2", true as "true"), None for containers."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # beyond Python's int-to-str digit limit: not matchable text
            return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def metric_getter(metric: str) -> Callable[[Mapping[str, Any], str], float | None]:
    """Accessor for a register metric: `metrics[M]`, a top-level numeric field of a custom type,
    or any field key (`data.cpu.user`, `tags.load`). Returns a finite float or None."""
    if metric.startswith(_PREFIXES):
        ref = parse_field(metric)
        getter: Getter | None = ref.get if isinstance(ref, FieldRef) else None
    else:
        getter = None

    def get(event: Mapping[str, Any], event_type: str) -> float | None:
        if getter is not None:
            raw = getter(event, event_type)
        else:
            metrics = event.get("metrics")
            raw = metrics.get(metric, MISSING) if isinstance(metrics, Mapping) else MISSING
            if raw is MISSING and event_type != EVENT_TYPE:
                raw = event.get(metric, MISSING)  # custom types: numeric fields are metrics
        number = None if isinstance(raw, str) and getter is None else as_number(raw)
        return number if number is not None and math.isfinite(number) else None

    return get


def _escape(part: str) -> str:
    # '/' separates parts; escaping keeps "a/b"+"c" and "a"+"b/c" apart while staying readable.
    return part.replace("%", "%25").replace("/", "%2F")


def group_key(values: Iterable[str]) -> str:
    """The group key string: escaped values joined by '/' (e.g. "web1/load")."""
    return "/".join(_escape(v) for v in values)


def group_value(value: Any) -> str:
    """A field value as a group-key part: text for scalars, canonical JSON otherwise, '' if absent."""
    if value is MISSING or value is None:
        return ""
    text = as_text(value)
    return text if text is not None else json.dumps(value, sort_keys=True, default=str)


def event_ref(event: Mapping[str, Any]) -> str:
    """The event's id, or a content hash for id-less custom records (stable across replays)."""
    event_id = event.get("id")
    if isinstance(event_id, str) and event_id:
        return event_id
    canonical = json.dumps(event, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
