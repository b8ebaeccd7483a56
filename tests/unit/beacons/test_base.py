"""Thresholds with hysteresis, state-change detection and sampling: the logic every built-in shares."""

from __future__ import annotations

import pytest

from app.beacons.base import Reading, Thresholds, graded, report, status_changes
from app.model.events import Kind, Severity

OK, WARN, CRIT = Severity.OK, Severity.WARNING, Severity.CRITICAL


@pytest.mark.parametrize(("value", "previous", "expected"), [
    (10, OK, OK),
    (80, OK, WARN),          # reaching warning
    (95, OK, CRIT),          # straight to critical
    (95, WARN, CRIT),
    (79, WARN, WARN),        # within hysteresis (80 - 5): stays
    (74.9, WARN, OK),        # below it: clears
    (91, CRIT, CRIT),        # within hysteresis of critical (90 - 5)
    (84.9, CRIT, WARN),      # below critical's band, still above warning
    (70, CRIT, OK),          # clears both
    (50, Severity.UNKNOWN, OK),  # UNKNOWN is not a level to hold on to
])
def test_thresholds__severity_with_hysteresis(value: float, previous: Severity, expected: Severity) -> None:
    assert Thresholds(warning=80, critical=90, hysteresis=5).severity(value, previous) == expected


def test_thresholds__a_switched_off_level_never_fires() -> None:
    assert Thresholds(warning=None, critical=90).severity(89) == OK
    assert Thresholds(warning=80, critical=None).severity(1e9) == WARN
    assert Thresholds().severity(1e9) == OK


def test_thresholds__describe_names_the_level_that_applies() -> None:
    t = Thresholds(warning=85, critical=95)
    assert t.describe(WARN, "%") == " (warning at 85%)"
    assert t.describe(OK, "%") == ""


def test_graded__uses_the_items_previous_severity(make_ctx) -> None:
    t = Thresholds(warning=80, hysteresis=5)
    assert graded(t, 78, {"disk:/": Reading("warning", WARN)}, "disk:/") == WARN
    assert graded(t, 78, {"disk:/home": Reading("warning", WARN)}, "disk:/") == OK
    assert graded(t, 78, None, "disk:/") == OK


def test_status_changes__first_look_and_changes_only(make_ctx) -> None:
    ctx = make_ctx()
    first = status_changes(ctx, None, {"a": Reading("up"), "b": Reading("down", CRIT, "b is down")})
    assert [(e.name, e.tags["state"], e.severity) for e in first] == [("a", "up", 0), ("b", "down", 2)]
    assert "previous" not in first[0].tags

    again = status_changes(ctx, {"a": Reading("up"), "b": Reading("down", CRIT)},
                           {"a": Reading("up"), "b": Reading("up", OK, "b is up")})
    assert [(e.name, e.tags["state"], e.tags["previous"], e.text) for e in again] == [("b", "up", "down", "b is up")]


def test_events__carry_subject_origin_time_and_config_tags(make_ctx) -> None:
    ctx = make_ctx(beacon="disk", tags={"role": "web", "dc": "ams1"})
    (event,) = status_changes(ctx, None, {"disk:/": Reading("ok", tags={"mount": "/", "role": "db"})})
    assert (event.subject, event.origin, event.time, event.kind) == ("web1", "beacon:disk", ctx.now_ms, Kind.STATUS)
    assert event.tags == {"role": "db", "dc": "ams1", "mount": "/", "state": "ok"}  # the event's own tag wins


def test_report__samples_metrics_every_run_and_keeps_unreadable_items(make_ctx) -> None:
    ctx = make_ctx()
    before = {"disk:/": Reading("ok", metrics={"used_pct": 10.0}),
              "disk:/mnt": Reading("ok", metrics={"used_pct": 5.0})}
    events, state = report(ctx, before, {"disk:/": Reading("ok", metrics={"used_pct": 11.0})},
                           unreadable=["disk:/mnt"])
    assert [(e.kind, e.name, e.metrics) for e in events] == [(Kind.METRIC, "disk:/", {"used_pct": 11.0})]
    assert state["disk:/mnt"] is before["disk:/mnt"]  # compared again with the last good reading


def test_report__no_sample_without_metrics_or_when_switched_off(make_ctx) -> None:
    ctx = make_ctx()
    events, _ = report(ctx, {"x": Reading("up")}, {"x": Reading("up")})
    assert events == []
    events, _ = report(ctx, {"x": Reading("up", metrics={"m": 1.0})}, {"x": Reading("up", metrics={"m": 1.0})},
                       sample=False)
    assert events == []
