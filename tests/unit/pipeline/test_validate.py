"""normalize_event: what enters the pipeline, and the reasons for what does not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.model.ids import deterministic_id
from app.pipeline.validate import (
    EVENT_TYPE,
    EventClock,
    NormalizedEvent,
    Rejection,
    format_time_ms,
    normalize_event,
)
from tests.unit.pipeline.conftest import NOW_MS

MAX_FUTURE_MS = 300_000
CUSTOM = "acme.Deploy"

MakeRecord = Callable[..., dict[str, Any]]


def normalize(record: Any, type_name: str = EVENT_TYPE) -> NormalizedEvent | Rejection:
    return normalize_event(record, type_name, now_ms=NOW_MS, max_future_ms=MAX_FUTURE_MS)


def accepted(record: Any, type_name: str = EVENT_TYPE) -> NormalizedEvent:
    result = normalize(record, type_name)
    assert isinstance(result, NormalizedEvent), f"rejected: {result}"
    return result


def test_event__fields_are_taken_as_they_are(make_record: MakeRecord) -> None:
    record = make_record(kind="STATUS", severity=2, text="disk full", tags={"dc": "ams"},
                         metrics={"used": 0.97}, ttl=30.0, origin="beacon", trace_id="t1")
    ev = accepted(record)
    assert ev == NormalizedEvent(
        id=record["id"], type_name=EVENT_TYPE, subject="web1", name="load", time_ms=NOW_MS, kind="STATUS",
        severity=2, metrics={"used": 0.97}, ttl_s=30.0, text="disk full", tags={"dc": "ams"}, origin="beacon",
        trace_id="t1",
    )
    assert ev.key == "web1/load"


@pytest.mark.parametrize("kind", ["METRIC", "STATUS", "ARCHIVE"])
def test_event__every_kind_keeps_its_severity(make_record: MakeRecord, kind: str) -> None:
    assert accepted(make_record(kind=kind, severity=1)).severity == 1


def test_event__missing_severity_reads_as_the_schema_default_ok(make_record: MakeRecord) -> None:
    record = make_record()
    del record["severity"]
    assert accepted(record).severity == 0


def test_event__time_exactly_at_the_future_limit_is_accepted(make_record: MakeRecord) -> None:
    assert accepted(make_record(time=NOW_MS + MAX_FUTURE_MS)).time_ms == NOW_MS + MAX_FUTURE_MS


def test_event__old_times_are_accepted(make_record: MakeRecord) -> None:
    assert accepted(make_record(time=NOW_MS - 86_400_000 * 365)).time_ms == NOW_MS - 86_400_000 * 365


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"subject": None}, "subject", "subject is missing"),
        ({"subject": "  "}, "subject", "subject is empty"),
        ({"subject": 42}, "subject", "subject must be a string, got int 42"),
        ({"name": None}, "name", "name is missing"),
        ({"name": ""}, "name", "name is empty"),
        ({"time": None}, "time", "time is missing"),
        ({"time": "yesterday"}, "time", "time must be integer milliseconds since the epoch, got str 'yesterday'"),
        ({"time": 1.5e12}, "time", "time must be integer milliseconds since the epoch, got float 1500000000000.0"),
        ({"time": NOW_MS + 3 * 86_400_000 + 7_261_500}, "time",
         "time 2026-01-04T02:01:01.500Z is 3d2h1m1s in the future (limit 5m)"),
        ({"time": NOW_MS + MAX_FUTURE_MS + 1}, "time", "time 2026-01-01T00:05:00.001Z is 5m in the future (limit 5m)"),
        ({"metrics": {"load1": float("nan")}}, "metrics.load1", "metric load1 is NaN: metrics must be finite"),
        ({"metrics": {"load1": float("inf")}}, "metrics.load1", "metric load1 is inf: metrics must be finite"),
        ({"metrics": {"ok": 1.0, "x": float("-inf")}}, "metrics.x", "metric x is -inf: metrics must be finite"),
        ({"metrics": {"load1": "high"}}, "metrics.load1", "metric load1 must be a number, got str 'high'"),
        ({"metrics": [1.0]}, "metrics", "metrics must be a map of names to numbers, got list"),
        ({"severity": 7}, "severity", "severity 7 is not one of 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"),
        ({"severity": True}, "severity", "severity True is not one of 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"),
        ({"ttl": 0}, "ttl", "ttl 0 must be a positive number of seconds (or absent)"),
        ({"ttl": -5.0}, "ttl", "ttl -5.0 must be a positive number of seconds (or absent)"),
        ({"ttl": float("nan")}, "ttl", "ttl nan must be a positive number of seconds (or absent)"),
    ],
)
def test_event__rejected_with_a_reason_naming_the_field(make_record: MakeRecord, fields: dict[str, Any], field: str,
                                                        reason: str) -> None:
    record = make_record(**fields)
    result = normalize(record)
    assert result == Rejection(field=field, reason=reason, type_name=EVENT_TYPE, event_id=record["id"])
    assert str(result) == reason


def test_rejection__without_a_usable_id_has_none(make_record: MakeRecord) -> None:
    result = normalize(make_record(id="", subject=None))
    assert isinstance(result, Rejection)
    assert result.event_id is None


def test_rejection__a_record_that_is_not_a_mapping() -> None:
    result = normalize(["web1", "load"])
    assert isinstance(result, Rejection)
    assert result.reason == "a vigil.Event record must be a mapping of fields, got list"


def test_custom_type__numeric_top_level_fields_are_metrics() -> None:
    record = {"subject": "web1", "name": "deploy", "time": NOW_MS, "duration_s": 42, "size_mb": 1.5,
              "dry_run": False, "version": "1.2.3", "ttl": 60, "severity": 1,
              "metrics": {"size_mb": 2.0, "files": 10.0}}
    ev = accepted(record, CUSTOM)
    # booleans and strings are not metrics; time/severity/ttl mean something else; the map wins
    assert ev.metrics == {"duration_s": 42, "size_mb": 2.0, "files": 10.0}
    assert (ev.severity, ev.ttl_s, ev.type_name) == (1, 60.0, CUSTOM)


def test_custom_type__without_severity_has_no_opinion_on_health() -> None:
    ev = accepted({"subject": "web1", "name": "deploy", "time": NOW_MS}, CUSTOM)
    assert ev.severity is None
    assert (ev.kind, ev.text, ev.tags, ev.metrics, ev.ttl_s, ev.origin, ev.trace_id) == ("STATUS", "", {}, {}, None, "",
                                                                                           None)


@pytest.mark.parametrize(("severity", "expected"), [("critical", 2), (" Warning ", 1), ("OK", 0), (3, 3), (None, None)])
def test_custom_type__severity_names_are_understood(severity: Any, expected: int | None) -> None:
    ev = accepted({"subject": "s", "name": "n", "time": NOW_MS, "severity": severity}, CUSTOM)
    assert ev.severity == expected


def test_custom_type__fields_with_other_meanings_fall_back_to_defaults() -> None:
    record = {"subject": "s", "name": "n", "time": NOW_MS, "kind": "push", "text": 42, "tags": ["a"],
              "origin": None, "metrics": "n/a", "trace_id": 7, "id": 99}
    ev = accepted(record, CUSTOM)
    assert (ev.kind, ev.text, ev.tags, ev.origin, ev.trace_id) == ("STATUS", "", {}, "", None)
    assert ev.metrics == {"text": 42, "trace_id": 7}  # numbers are metrics whatever their name, except the id
    assert ev.id != "99"


def test_custom_type__non_string_tag_values_are_stringified() -> None:
    ev = accepted({"subject": "s", "name": "n", "time": NOW_MS, "tags": {"attempt": 3}}, CUSTOM)
    assert ev.tags == {"attempt": "3"}


def test_custom_type__a_nan_numeric_field_is_a_rejected_metric() -> None:
    result = normalize({"subject": "s", "name": "n", "time": NOW_MS, "latency": float("nan")}, CUSTOM)
    assert isinstance(result, Rejection)
    assert (result.field, result.reason) == ("metrics.latency", "metric latency is NaN: metrics must be finite")


def test_custom_type__timestamp_logical_type_datetimes_are_read_as_ms() -> None:
    when = datetime(2026, 1, 1, 0, 0, 1, 250_000, tzinfo=UTC)
    assert accepted({"subject": "s", "name": "n", "time": when}, CUSTOM).time_ms == NOW_MS + 1250
    assert accepted({"subject": "s", "name": "n", "time": when.replace(tzinfo=None)}, CUSTOM).time_ms == NOW_MS + 1250


def test_custom_type__missing_id_is_derived_from_type_and_content() -> None:
    record = {"subject": "s", "name": "n", "time": NOW_MS, "version": "1.2.3"}
    first = accepted(record, CUSTOM).id
    assert first == accepted(dict(reversed(record.items())), CUSTOM).id  # field order does not matter
    assert first != accepted({**record, "version": "1.2.4"}, CUSTOM).id
    assert first != accepted(record, "acme.Other").id
    assert first != deterministic_id(CUSTOM, "s", "n", str(NOW_MS))  # content is part of it


def test_custom_type__unserialisable_content_still_gets_a_stable_id() -> None:
    record = {"subject": "s", "name": "n", "time": NOW_MS, "huge": 1 << 70, "blob": b"\x00"}
    assert accepted(record, CUSTOM).id == accepted(dict(record), CUSTOM).id


def test_format_time_ms__out_of_range_times_still_read() -> None:
    assert format_time_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_time_ms(10**18) == f"{10**18} ms since the epoch"


_ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.binary(max_size=3),
    st.datetimes(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.floats(), max_size=2),
)


@settings(deadline=None)
@given(record=st.dictionaries(
    st.sampled_from(["id", "subject", "name", "time", "severity", "ttl", "metrics", "tags", "kind", "text", "x"]),
    _ANY_VALUE))
def test_normalize__never_raises_on_bad_input(record: dict[str, Any]) -> None:
    for type_name in (EVENT_TYPE, CUSTOM):
        assert isinstance(normalize(record, type_name), NormalizedEvent | Rejection)


@pytest.mark.parametrize(("value", "expected"), [
    ({"time": 1_000}, 1_000),                             # the event's time, also when older
    ({"time": 5_000 + MAX_FUTURE_MS}, 5_000 + MAX_FUTURE_MS),  # at the limit ahead of Kafka's time
    ({"time": 5_001 + MAX_FUTURE_MS}, 5_000),             # beyond it: rejected, must not move the watermark
    ({"time": "soon"}, 5_000),
    ({"time": 1.5}, 5_000),
    ({}, 5_000),
    ("not a record", 5_000),
    (None, 5_000),
])
def test_event_clock__time_field_unless_too_far_ahead_else_kafka_time(value: Any, expected: int) -> None:
    assert EventClock(MAX_FUTURE_MS)(value, 5_000) == expected
