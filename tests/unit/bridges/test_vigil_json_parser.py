"""POST /v1/events bodies: Vigil events and typed records, with errors that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.vigil_json import parse_vigil_json
from app.model.events import Kind

EVENT = {"subject": "web-1", "name": "load", "kind": "METRIC", "metrics": {"load1": 0.5}}


@pytest.mark.parametrize("body", [EVENT, [EVENT], {"events": [EVENT]}])
def test_single_list_and_wrapped_bodies__are_accepted(body: Any) -> None:
    (event,) = parse_vigil_json(json.dumps(body).encode()).events
    assert (event.subject, event.name, event.kind, event.metrics, event.origin) == (
        "web-1", "load", Kind.METRIC, {"load1": 0.5}, "http")


def test_origin_and_ids_given_by_the_sender__are_kept() -> None:
    (event,) = parse_vigil_json({**EVENT, "origin": "my-sdk", "id": "abc", "time": 1700000000000}).events
    assert (event.origin, event.id, event.time) == ("my-sdk", "abc", 1700000000000)


def test_typed_records__are_separated_for_the_sink_without_their_type_key() -> None:
    result = parse_vigil_json([EVENT, {"type": "acme.Deploy", "subject": "api", "name": "deploy", "time": 1},
                               {**EVENT, "type": "vigil.Event"}])
    assert len(result.events) == 2
    (typed,) = result.typed
    assert (typed.index, typed.type_fullname, typed.record, typed.field_prefix) == (
        1, "acme.Deploy", {"subject": "api", "name": "deploy", "time": 1}, "events[1].")


@pytest.mark.parametrize(("item", "field", "reason"), [
    ({**EVENT, "metrics": {"load1": 1e400}}, "events[1].metrics.load1", "must be a finite number"),
    ({**EVENT, "metrics": {"load1": 10**400}}, "events[1].metrics.load1", "must be a finite number"),
    ({**EVENT, "metrics": {"load1": "high"}}, "events[1].metrics.load1", "must be a number"),
    ({**EVENT, "metrics": {"load1": True}}, "events[1].metrics.load1", "must be a number"),
    ({**EVENT, "subject": ""}, "events[1].subject", "must not be empty"),
    ({"name": "x"}, "events[1].subject", "Field required"),
    ({**EVENT, "kind": "LOG"}, "events[1].kind", "Input should be"),
    ({**EVENT, "severity": 7}, "events[1].severity", "less than or equal to 3"),
    ({**EVENT, "tags": {"a": {"b": 1}}}, "events[1].tags.a", "valid string"),
    ({**EVENT, "colour": "red"}, "events[1].colour", "is not a field of a Vigil event"),
    ({**EVENT, "type": ""}, "events[1].type", "registered record type"),
    ("text", "events[1]", "must be an object"),
])
def test_invalid_item__is_reported_with_index_and_field_while_the_others_pass(item: Any, field: str,
                                                                                reason: str) -> None:
    # 1e400 is valid JSON that overflows to inf (json.dumps would write the non-JSON "Infinity").
    result = parse_vigil_json(json.dumps([EVENT, item, EVENT]).replace("Infinity", "1e400").encode())
    assert len(result.events) == 2
    (error,) = result.errors
    assert (error.index, error.field) == (1, field)
    assert reason in error.reason


def test_single_event_errors__have_no_prefix() -> None:
    (error,) = parse_vigil_json({**EVENT, "ttl": -1}).errors
    assert error.field == "ttl"


@pytest.mark.parametrize(("body", "field"), [
    (b"", "body"), (b"{", "body"), (b"[NaN]", "body"), (b"\xff", "body"), (b"42", "body"),
    (b"[]", "events"), (b'{"events": {}}', "events"), (b"[" * 100_000 + b"]" * 100_000, "body"),
])
def test_unusable_bodies__raise_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_vigil_json(body)
    assert caught.value.field == field
