"""One place that turns any event-type record into the fields the pipeline needs, or rejects it.

Every record on `events` passes through `normalize_event` before status, windows or rules see it.
A record is accepted when it has a non-empty `subject` and `name` and an integer `time` (ms since
the epoch, or a datetime from an Avro timestamp logical type) that is not too far in the future, and
every metric is a finite number. Anything else becomes a `Rejection` whose reason names the field,
for the dead-letter topic.

How fields are read (the same rules for `vigil.Event` and custom types, so a custom type behaves
like an event that left optional fields at their defaults):

- `id`: the record's id; a custom type without one gets a deterministic id derived from its type
  and content, so a redelivered or replayed record keeps the same id.
- `severity`: 0..3 (or the names OK/WARNING/CRITICAL/UNKNOWN). `vigil.Event` always has one (the
  schema default is 0), whatever its kind: a METRIC or ARCHIVE event with a severity speaks about
  health like any other. A custom type without a `severity` field (or with null) gets `None`:
  "no opinion on health" -- the event proves the identity is alive (last_seen, counts, ttl) but does
  not change its state. A severity outside 0..3 is rejected: status would be folded from nonsense.
- `metrics`: the `metrics` map, plus for custom types every numeric top-level field except `id`,
  `time`, `severity` and `ttl` (a number in a field like `text` is a metric: it is no text). The
  map wins when both name the same metric. NaN and infinities are rejected.
- `ttl`: seconds; absent/null means no absence detection; zero, negative or non-finite reject.
- `kind`, `text`, `tags`, `origin`, `trace_id`: taken when they have the expected type, else the
  schema default (a custom type may use such names for something else; that is not an error).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from app.durations import format_duration_ms
from app.model.events import Event, Kind, Severity
from app.model.ids import deterministic_id

__all__ = ["EVENT_TYPE", "EventClock", "NormalizedEvent", "Rejection", "format_time_ms", "normalize_event"]

#: Avro full name of the built-in event record.
EVENT_TYPE: Final = Event.avro_name

_KINDS: Final = frozenset(k.value for k in Kind)
_DEFAULT_KIND: Final = Kind.STATUS.value
_SEVERITY_BY_NAME: Final = {s.name: int(s) for s in Severity}
#: Top-level fields of custom types that have a pipeline meaning and so are never metrics.
_NOT_METRICS: Final = frozenset({"id", "time", "severity", "ttl"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


@dataclass(slots=True)
class NormalizedEvent:
    """The fields of an event the pipeline works with, whatever its Avro type.

    Read-only by convention (not `frozen`: one is built per event, and frozen dataclasses are
    several times slower to construct). `tags` and `metrics` may share the dicts of the original
    record: treat them as read-only too.
    """

    id: str
    type_name: str
    subject: str
    name: str
    time_ms: int
    kind: str
    #: 0..3, or None: the event has no opinion on health (a custom type without a severity).
    severity: int | None
    metrics: Mapping[str, float]
    ttl_s: float | None
    text: str
    tags: Mapping[str, str]
    origin: str = ""
    trace_id: str | None = None

    @property
    def key(self) -> str:
        """The identity key, 'subject/name' (also the Kafka key of the event)."""
        return f"{self.subject}/{self.name}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record cannot enter the pipeline; `reason` is written for the person who sent it."""

    field: str
    reason: str
    type_name: str
    #: the record's own id when it has a usable one (to find it again from the dead-letter topic)
    event_id: str | None = None

    def __str__(self) -> str:
        return self.reason


class _Invalid(Exception):
    """Internal: a field failed a check (carries the field name and the reason)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def format_time_ms(time_ms: int) -> str:
    """An ms timestamp as ISO 8601 UTC ('2099-01-01T00:00:00.000Z'), or 'N ms' when out of range."""
    try:
        text = (_EPOCH + time_ms * _MS).isoformat(timespec="milliseconds")
    except OverflowError:
        return f"{time_ms} ms since the epoch"
    return text.replace("+00:00", "Z")


class EventClock:
    """The event time of a record for its partition's watermark (an agent's `timestamp=`): the
    `time` field, except that one more than `max_future_ms` ahead of the record's Kafka timestamp
    (a future time normalize_event rejects) must not move the watermark, which would close every
    open window and make all later events late. Otherwise the Kafka timestamp.

    A class rather than a closure so that the compiled module makes it a C call: the engine calls
    it once per record."""

    def __init__(self, max_future_ms: int) -> None:
        self.max_future_ms = max_future_ms

    # equal clocks are one clock: the engine computes a batch's event times once for all the
    # agents of a topic whose clocks are equal (the pipeline's and the routes')
    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventClock) and other.max_future_ms == self.max_future_ms

    def __hash__(self) -> int:
        return hash(("EventClock", self.max_future_ms))

    def __call__(self, value: Any, kafka_timestamp_ms: int) -> int:
        if type(value) is dict:
            time_ms = value.get("time")
            if type(time_ms) is int and time_ms - kafka_timestamp_ms <= self.max_future_ms:
                return time_ms
        return kafka_timestamp_ms


def normalize_event(record: Any, type_name: str, *, now_ms: int, max_future_ms: int) -> NormalizedEvent | Rejection:
    """Read `record` (a decoded Avro record of type `type_name`) as a NormalizedEvent, or say why not.

    `now_ms` is the wall clock used for the "too far in the future" check, `max_future_ms` the limit.
    Never raises for bad input: every problem becomes a Rejection.
    """
    if type_name == EVENT_TYPE and type(record) is dict:
        fast = _decoded_event(record, now_ms + max_future_ms)
        if fast is not None:
            return fast
    raw_id = record.get("id") if isinstance(record, Mapping) else None
    event_id = raw_id if isinstance(raw_id, str) and raw_id else None
    try:
        return _normalize(record, type_name, event_id, now_ms=now_ms, max_future_ms=max_future_ms)
    except _Invalid as exc:
        return Rejection(field=exc.field, reason=exc.reason, type_name=type_name, event_id=event_id)


def _decoded_event(record: dict[str, Any], latest_ms: int) -> NormalizedEvent | None:
    """The common case, quickly: a valid vigil.Event as fastavro decodes it (every field present
    with its schema type). None for anything else -- the general path then accepts or explains.

    It makes exactly the general path's checks, in the types the schema guarantees; `latest_ms` is
    the latest acceptable time (now + max_future)."""
    try:
        event_id = record["id"]
        subject = record["subject"]
        name = record["name"]
        time_ms = record["time"]
        severity = record["severity"]
        metrics = record["metrics"]
        ttl = record["ttl"]
        tags = record["tags"]
        kind = record["kind"]
        text = record["text"]
    except KeyError:
        return None
    if (type(event_id) is not str or not event_id or type(subject) is not str or type(name) is not str
            or type(time_ms) is not int or type(severity) is not int or not 0 <= severity <= 3
            or type(metrics) is not dict or type(tags) is not dict or type(text) is not str
            or type(kind) is not str or kind not in _KINDS or not subject.strip() or not name.strip()
            or time_ms > latest_ms):
        return None
    if ttl is not None and (type(ttl) is not float or not 0.0 < ttl < math.inf):
        return None
    for value in metrics.values():
        if type(value) is not float or value - value != 0.0:  # NaN and infinities give NaN
            return None
    for value in tags.values():
        if type(value) is not str:
            return None
    origin = record.get("origin")
    trace_id = record.get("trace_id")
    return NormalizedEvent(event_id, EVENT_TYPE, subject, name, time_ms, kind, severity, metrics, ttl, text, tags,
                           origin if type(origin) is str else "", trace_id if type(trace_id) is str else None)


def _normalize(record: Any, type_name: str, event_id: str | None, *, now_ms: int,
               max_future_ms: int) -> NormalizedEvent:
    if not isinstance(record, Mapping):
        raise _Invalid("", f"a {type_name} record must be a mapping of fields, got {type(record).__name__}")
    subject = _identity_part(record, "subject")
    name = _identity_part(record, "name")
    time_ms = _time_ms(record.get("time"))
    ahead_ms = time_ms - now_ms
    if ahead_ms > max_future_ms:
        raise _Invalid("time", f"time {format_time_ms(time_ms)} is {_rough_duration(ahead_ms)} in the future "
                               f"(limit {format_duration_ms(max_future_ms)})")
    is_custom = type_name != EVENT_TYPE
    metrics = _metrics(record, custom=is_custom)
    kind = record.get("kind")
    text = record.get("text")
    origin = record.get("origin")
    trace_id = record.get("trace_id")
    return NormalizedEvent(
        id=event_id or _derived_id(record, type_name, subject, name, time_ms),
        type_name=type_name,
        subject=subject,
        name=name,
        time_ms=time_ms,
        kind=kind if isinstance(kind, str) and kind in _KINDS else _DEFAULT_KIND,
        severity=_severity(record.get("severity", None if is_custom else 0)),
        metrics=metrics,
        ttl_s=_ttl_s(record.get("ttl")),
        text=text if isinstance(text, str) else "",
        tags=_tags(record.get("tags")),
        origin=origin if isinstance(origin, str) else "",
        trace_id=trace_id if isinstance(trace_id, str) else None,
    )


def _identity_part(record: Mapping[str, Any], field: str) -> str:
    value = record.get(field)
    if value is None:
        raise _Invalid(field, f"{field} is missing")
    if not isinstance(value, str):
        raise _Invalid(field, f"{field} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise _Invalid(field, f"{field} is empty")
    return value


def _time_ms(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):  # Avro timestamp-millis/-micros logical types decode to datetimes
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _MS
    if value is None:
        raise _Invalid("time", "time is missing")
    raise _Invalid("time", f"time must be integer milliseconds since the epoch, got {type(value).__name__} {value!r}")


def _rough_duration(ms: int) -> str:
    """'3d2h5m12s' rather than '3d2h5m12s345ms': people want the size, not the exact ms."""
    return format_duration_ms(ms - ms % 1000 if ms >= 1000 else ms)


def _metric_value(metric: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"metrics.{metric}", f"metric {metric} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise _Invalid(f"metrics.{metric}", f"metric {metric} is {_non_finite_name(value)}: metrics must be finite")
    return value


def _non_finite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"


def _metrics(record: Mapping[str, Any], *, custom: bool) -> Mapping[str, float]:
    declared = record.get("metrics")
    if declared is None:
        declared = {}
    elif not isinstance(declared, Mapping):
        if not custom:
            raise _Invalid("metrics", f"metrics must be a map of names to numbers, got {type(declared).__name__}")
        declared = {}  # a custom type's own field that happens to be called `metrics`
    for metric, value in declared.items():
        _metric_value(metric, value)
    if not custom:
        return declared  # the common case: no copy
    merged: dict[str, float] = {}
    for field, value in record.items():
        if field in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        merged[field] = _metric_value(field, value)
    merged.update(declared)
    return merged


def _severity(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return value
    if isinstance(value, str) and value.strip().upper() in _SEVERITY_BY_NAME:
        return _SEVERITY_BY_NAME[value.strip().upper()]
    raise _Invalid("severity", f"severity {value!r} is not one of 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")


def _ttl_s(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _Invalid("ttl", f"ttl {value!r} must be a positive number of seconds (or absent)")
    return float(value)


def _tags(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return {}
    if all(isinstance(v, str) for v in value.values()):
        return value
    return {str(k): str(v) for k, v in value.items()}


def _derived_id(record: Mapping[str, Any], type_name: str, subject: str, name: str, time_ms: int) -> str:
    """A stable id for a record that has none: the same record always gets the same id."""
    try:
        content = orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr).decode()
    except orjson.JSONEncodeError:  # e.g. integers beyond 64 bits; repr is still deterministic
        content = repr(sorted(record.items(), key=lambda item: str(item[0])))
    return deterministic_id(type_name, subject, name, str(time_ms), content)
