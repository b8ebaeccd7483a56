"""`POST /v1/events`: events in Vigil's own model (or any registered type) as JSON.

Accepted bodies: one event object, an array of them, or `{"events": [...]}`. An item with a `type`
key other than `vigil.Event` is a record of that registered type: the key is removed and the rest
is handed to the sink, which validates it against the registered schema (`EventSink.send_typed`).
Everything else is checked here against the Event model; errors name the field the way the sender
wrote it, e.g. `events[2].metrics.load1: must be a finite number`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from app.bridges.errors import ParseError
from app.bridges.parsers._common import (
    ParseResult,
    TypedRecord,
    json_body,
    pydantic_parse_error,
    require_mapping,
)
from app.model.events import Event

__all__ = ["VIGIL_EVENT_TYPES", "parse_vigil_json"]

ORIGIN = "http"
#: `type` values that mean "a plain Vigil event".
VIGIL_EVENT_TYPES = frozenset({"vigil.Event", "Event"})


def parse_vigil_json(body: bytes | str | Any, *, origin: str = ORIGIN,
                     id_for: Callable[[int], str] | None = None) -> ParseResult:
    """Parse a JSON body of Vigil events / typed records; per-item errors carry the item's index.

    `origin` is filled in for events that do not name their own; `id_for(index)`, when given, is the
    id of an event that names none (a delivery's events keep their ids when it is sent again).
    """
    data = json_body(body)
    if isinstance(data, list):
        items, batch = data, True
    elif isinstance(data, Mapping) and set(data) == {"events"}:
        if not isinstance(data["events"], list):
            raise ParseError("events", "must be an array of events")
        items, batch = data["events"], True
    elif isinstance(data, Mapping):
        items, batch = [data], False
    else:
        raise ParseError("body", 'must be an event object, an array of events, or {"events": [...]}')
    if not items:
        raise ParseError("events", "the batch is empty")

    result = ParseResult()
    for index, item in enumerate(items):
        prefix = f"events[{index}]." if batch else ""
        try:
            parsed = _parse_item(item, prefix=prefix, index=index, origin=origin, id_for=id_for)
        except ParseError as exc:
            exc.index = index
            result.errors.append(exc)
            continue
        if isinstance(parsed, Event):
            result.events.append(parsed)
        else:
            result.typed.append(parsed)
    return result


def _parse_item(item: Any, *, prefix: str, index: int, origin: str,
                id_for: Callable[[int], str] | None) -> Event | TypedRecord:
    data = dict(require_mapping(item, prefix.rstrip(".") or "body"))
    type_name = data.pop("type", None)
    if type_name is not None:
        if not isinstance(type_name, str) or not type_name.strip():
            raise ParseError(f"{prefix}type", "must be the full name of a registered record type")
        if type_name not in VIGIL_EVENT_TYPES:
            return TypedRecord(index=index, type_fullname=type_name, record=data, field_prefix=prefix)
    _check_metrics(data.get("metrics"), prefix)
    if not data.get("origin"):
        data["origin"] = origin
    if id_for is not None and data.get("id") is None:
        data["id"] = id_for(index)
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        raise pydantic_parse_error(exc, prefix, index=index) from None


def _check_metrics(metrics: Any, prefix: str) -> None:
    """Name the exact metric that is wrong (the model's own check only names `metrics`)."""
    if not isinstance(metrics, Mapping):
        return
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParseError(f"{prefix}metrics.{key}", f"must be a number, got {value!r:.40}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a double
            finite = False
        if not finite:
            raise ParseError(f"{prefix}metrics.{key}", "must be a finite number")
