"""Triggers through the engine: register (each aggregate, for), status, absent_for, count, sequence,
plus throttle and group_by. Time is event time throughout; nothing sleeps."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from app.rules.triggers import AbsentTrigger, RegisterTrigger, aggregate

from .conftest import Harness, alert, event, one_rule

S = 1000  # ms per second, for readable times

# --- register ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "samples", "expected"), [
    ("avg", [[0, 10], [1, 20], [2, 30]], 20.0),
    ("min", [[0, 10], [1, 5], [2, 30]], 5.0),
    ("max", [[0, 10], [1, 5], [2, 30]], 30.0),
    ("sum", [[0, 10], [1, 5], [2, 30]], 45.0),
    ("count", [[0, 10], [1, 5], [2, 30]], 3.0),
    ("last", [[0, 10], [1, 5], [2, 30]], 30.0),
    ("rate", [[0, 100], [2000, 110], [4000, 120]], 5.0),  # +20 over 4 s
    ("rate", [[0, 100], [2000, 110], [4000, 4]], 3.5),  # reset at 4 s: 10 + 4 over 4 s
    ("rate", [[0, 100]], None),  # one sample has no rate
    ("rate", [[5, 1], [5, 2]], None),  # no elapsed time
    ("p95", [[i, float(i)] for i in range(1, 101)], 95.0),
    ("p95", [[0, 1.0], [1, 2.0]], 2.0),
    ("p50", [[i, float(i)] for i in range(1, 11)], 5.0),
    ("avg", [], None),
])
def test_aggregate__table(name: str, samples: list[list[float]], expected: float | None) -> None:
    assert aggregate(name, samples) == expected


def register_rule(aggregate_name: str, when: str, extra: str = "") -> str:
    return one_rule(f"""
        match: {{name: load}}
        register: {{metric: load1, aggregate: {aggregate_name}, period: 10s}}
        when: {when}
        {extra}
    """)


def loads(*values_at: tuple[int, float], subject: str = "web1") -> list[dict[str, Any]]:
    return [event(subject, "load", t, metrics={"load1": v}) for t, v in values_at]


@pytest.mark.parametrize(("agg", "when", "stream", "fired_values"), [
    ("avg", "{gt: 20}", [(0, 10), (1 * S, 40), (2 * S, 10)], [25.0]),
    ("min", "{ge: 5}", [(0, 5), (1 * S, 1), (2 * S, 9)], [5.0]),
    ("max", "{gt: 90}", [(0, 50), (1 * S, 95), (2 * S, 10)], [95.0, 95.0]),
    ("sum", "{ge: 30}", [(0, 10), (1 * S, 10), (2 * S, 10)], [30.0]),
    ("count", "{ge: 3}", [(0, 1), (1 * S, 1), (2 * S, 1), (20 * S, 1)], [3.0]),
    ("last", "{lt: 0}", [(0, 5), (1 * S, -1), (2 * S, 3)], [-1.0]),
    ("rate", "{gt: 4}", [(0, 0), (1 * S, 5), (2 * S, 8)], [5.0]),
    ("p95", "{gt: 100}", [(0, 1), (1 * S, 200), (2 * S, 1)], [200.0, 200.0]),
])
def test_register__each_aggregate_fires_while_when_holds(
        harness: Callable[[str], Harness], agg: str, when: str, stream: list[tuple[int, float]],
        fired_values: list[float]) -> None:
    h = harness(register_rule(agg, when))
    assert [f.value for f in h.feed(loads(*stream))] == fired_values


def test_register__window_slides_by_event_time(harness: Callable[[str], Harness]) -> None:
    h = harness(register_rule("max", "{gt: 90}"))
    # 95 at 0 s is in the window (t-10s, t] until t reaches 10 s.
    fired = h.feed(loads((0, 95), (9 * S, 10), (10 * S, 10), (11 * S, 10)))
    assert [f.time_ms for f in fired] == [0, 9 * S]


def test_register__for_requires_the_condition_to_hold_continuously(harness: Callable[[str], Harness]) -> None:
    h = harness(register_rule("last", "{gt: 20}", "for: 30s"))
    stream = [(0, 25), (10 * S, 25), (20 * S, 10), (30 * S, 25), (50 * S, 25), (60 * S, 25), (70 * S, 25)]
    fired = h.feed(loads(*stream))
    # Broken at 20 s, holds again from 30 s: first firing once it held 30 s (at 60 s).
    assert [f.time_ms for f in fired] == [60 * S, 70 * S]


def test_register__events_without_the_metric_are_ignored(harness: Callable[[str], Harness]) -> None:
    h = harness(register_rule("count", "{ge: 1}"))
    assert h.feed([event("web1", "load", 0, metrics={"other": 1.0})]) == []
    assert h.store == {}


def test_register__late_sample_outside_the_window_is_dropped() -> None:
    trigger = RegisterTrigger("m", "count", 10 * S, lambda v, e, t: True)
    step = trigger.on_event(None, event(metrics={"m": 1.0}, time=100 * S), "vigil.Event", 100 * S, {})
    late = trigger.on_event(step.state, event(metrics={"m": 1.0}, time=80 * S), "vigil.Event", 80 * S, {})
    assert late.state is step.state and late.hit is None


def test_register__out_of_order_sample_within_window_is_kept_in_time_order() -> None:
    trigger = RegisterTrigger("m", "last", 10 * S, lambda v, e, t: True)
    state = None
    for t, v in [(5 * S, 1.0), (3 * S, 2.0)]:
        step = trigger.on_event(state, event(metrics={"m": v}, time=t), "vigil.Event", t, {})
        state = step.state
    assert state is not None and state["s"] == [[3 * S, 2.0], [5 * S, 1.0]]
    assert step.hit is not None and step.hit.value == 1.0  # "last" is the newest by time


def test_register__samples_per_group_are_bounded() -> None:
    trigger = RegisterTrigger("m", "count", 3_600 * S, lambda v, e, t: True, max_samples=4)
    state = None
    for t in range(10):
        state = trigger.on_event(state, event(metrics={"m": 1.0}, time=t), "vigil.Event", t, {}).state
    assert state is not None and [s[0] for s in state["s"]] == [6, 7, 8, 9]


@pytest.mark.parametrize("name", ["avg", "sum", "min", "max"])
def test_aggregate__same_floats_as_the_builtins(name: str) -> None:
    # avg/sum/min/max run over the samples without a list of values: bit for bit what sum(),
    # min() and max() of the values give (a backtest's reports must not change).
    rng = random.Random(name)
    builtin: dict[str, Callable[[list[float]], float]] = {
        "avg": lambda v: sum(v) / len(v), "sum": sum, "min": min, "max": max}
    for size in (1, 2, 7, 512):
        values = [rng.uniform(-1e6, 1e6) * rng.choice((1e-9, 1.0, 1e9)) for _ in range(size)]
        assert aggregate(name, [[i, v] for i, v in enumerate(values)]) == builtin[name](values)


def test_register__in_order_samples_slide_and_stay_bounded_without_touching_the_old_state() -> None:
    # Reference: the previous state's samples copied, the new one appended, the window's start
    # and max_samples trimmed off the front.
    trigger = RegisterTrigger("m", "sum", 10 * S, lambda v, e, t: True, max_samples=5)
    rng = random.Random(3)
    state: dict[str, Any] | None = None
    t = 0
    for _ in range(200):
        t += rng.choice((0, 1, 500, 3 * S, 11 * S))
        v = float(rng.randrange(100))
        before = json.loads(json.dumps(state))
        expected = [*(state["s"] if state else []), [t, v]]
        expected = [s for s in expected if s[0] > t - 10 * S][-5:]
        step = trigger.on_event(state, event(metrics={"m": v}, time=t), "vigil.Event", t, {})
        assert step.state is not None and step.state["s"] == expected
        assert json.loads(json.dumps(state)) == before  # stored values never change
        assert step.hit is not None and step.hit.value == sum(s[1] for s in expected)
        state = step.state


def test_register__state_is_json_serialisable(harness: Callable[[str], Harness]) -> None:
    h = harness(register_rule("avg", "{gt: 0}", "for: 1s"))
    h.feed(loads((0, 1), (1 * S, 2)))
    assert json.loads(json.dumps(h.store)) == h.store


# --- status -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "transition", "expected"), [
    ("{to: CRITICAL}", ("OK", "CRITICAL"), True),
    ("{to: CRITICAL}", ("OK", "WARNING"), False),
    ("{to: critical, from: ok}", ("OK", "CRITICAL"), True),
    ("{to: CRITICAL, from: OK}", ("WARNING", "CRITICAL"), False),
    ("{from: NONE}", ("NONE", "OK"), True),
    ("{from: [CRITICAL, WARNING], to: OK}", ("WARNING", "OK"), True),
    ("{from: [CRITICAL, WARNING], to: OK}", ("UNKNOWN", "OK"), False),
    ("{to: '*'}", ("OK", "EXPIRED"), True),
    ("{}", ("CRITICAL", "OK"), True),
])
def test_status__from_and_to_select_transitions(harness: Callable[[str], Harness], status: str,
                                                transition: tuple[str, str], expected: bool) -> None:
    h = harness(one_rule(f"status: {status}"))
    fired = h.feed([alert(from_state=transition[0], to_state=transition[1])])
    assert bool(fired) is expected
    if fired:
        assert fired[0].value == transition[1] and fired[0].trigger == "status"


def test_status__match_applies_to_the_alert_fields(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("status: {to: CRITICAL}\nmatch: {subject: 'db*', tags.env: prod, severity: {ge: 2}}"))
    assert h.feed([alert("web1", tags={"env": "prod"})]) == []
    assert h.feed([alert("db1", tags={"env": "dev"})]) == []
    assert len(h.feed([alert("db1", tags={"env": "prod"})])) == 1


def test_status__rules_ignore_events_and_event_rules_ignore_transitions(harness: Callable[[str], Harness]) -> None:
    h = harness("""
        rules:
          - {name: on-status, status: {to: CRITICAL}, actions: [{print: {}}]}
          - {name: on-event, match: {subject: web1}, actions: [{print: {}}]}
    """)
    assert [f.rule for f in h.feed([event("web1", "disk", 1)])] == ["on-event"]
    assert [f.rule for f in h.feed([alert("web1", "disk", 2)])] == ["on-status"]


# --- absent_for --------------------------------------------------------------------------------------

ABSENT = one_rule("match: {name: heartbeat}\nabsent_for: 60s")


def beats(*times: int, subject: str = "web1") -> list[dict[str, Any]]:
    return [event(subject, "heartbeat", t) for t in times]


def test_absent_for__fires_once_per_silence(harness: Callable[[str], Harness]) -> None:
    h = harness(ABSENT)
    h.feed(beats(0, 30 * S))
    fired = h.advance(1_000 * S)  # a long silence: still one firing
    assert [(f.time_ms, f.trigger_id, f.value) for f in fired] == [(90 * S, f"absent:{30 * S}", 60.0)]
    assert h.advance(5_000 * S) == []
    assert fired[0].event["subject"] == "web1"  # the last event seen is the cause


def test_absent_for__next_event_rearms(harness: Callable[[str], Harness]) -> None:
    h = harness(ABSENT)
    h.feed(beats(0))
    assert len(h.advance(100 * S)) == 1
    h.feed(beats(200 * S))
    assert [f.time_ms for f in h.advance(500 * S)] == [260 * S]


def test_absent_for__regular_events_never_fire(harness: Callable[[str], Harness]) -> None:
    h = harness(ABSENT)
    assert h.feed(beats(*range(0, 600 * S, 59 * S))) == []


def test_absent_for__groups_are_independent(harness: Callable[[str], Harness]) -> None:
    h = harness(ABSENT)
    h.feed(beats(0, subject="a") + beats(0, subject="b") + beats(50 * S, subject="b"))
    assert [(f.group_key, f.time_ms) for f in h.advance(200 * S)] == [("a/heartbeat", 60 * S),
                                                                     ("b/heartbeat", 110 * S)]


def test_absent_for__early_timer_sleeps_again_and_late_event_does_not_rearm() -> None:
    trigger = AbsentTrigger(60 * S)
    step = trigger.on_event(None, event(time=10 * S), "vigil.Event", 10 * S, {"subject": "web1"})
    assert step.timer_at_ms == 70 * S
    early = trigger.on_timer(step.state, 50 * S)
    assert early.hit is None and early.timer_at_ms == 70 * S
    late = trigger.on_event(step.state, event(time=5 * S), "vigil.Event", 5 * S, {"subject": "web1"})
    assert late.state is step.state and late.timer_at_ms is None


def test_absent_for__timer_of_removed_rule_is_ignored(harness: Callable[[str], Harness]) -> None:
    h = harness(ABSENT)
    assert h.engine.on_timer("gone/absent_for/web1", 1, None) == []
    assert h.engine.on_timer("r/register/web1", 1, None) == []


# --- count ------------------------------------------------------------------------------------------

COUNT = one_rule("match: {name: login, tags.result: failure}\ncount: {at_least: 3, within: 60s}")


def logins(*times: int, result: str = "failure", subject: str = "web1") -> list[dict[str, Any]]:
    return [event(subject, "login", t, tags={"result": result}) for t in times]


@pytest.mark.parametrize(("times", "fired_at"), [
    ((0, 10 * S, 20 * S), [20 * S]),
    ((0, 10 * S, 61 * S), []),  # the first fell out of the window
    ((0, 30 * S, 60 * S), [60 * S]),  # inclusive: exactly 60 s apart
    ((0, 1, 2, 3, 4, 5), [2, 5]),  # counts afresh after firing
    ((0, 50 * S, 70 * S, 120 * S, 130 * S), [130 * S]),  # sliding: 70, 120, 130 are within 60 s
])
def test_count__fires_when_enough_events_fall_within(harness: Callable[[str], Harness], times: tuple[int, ...],
                                                     fired_at: list[int]) -> None:
    h = harness(COUNT)
    fired = h.feed(logins(*times))
    assert [f.time_ms for f in fired] == fired_at
    assert all(f.value == 3 for f in fired)


def test_count__other_events_do_not_count(harness: Callable[[str], Harness]) -> None:
    h = harness(COUNT)
    assert h.feed(logins(0, 1) + logins(2, result="success") + logins(3, subject="web2")) == []


# --- sequence ---------------------------------------------------------------------------------------

SEQUENCE = one_rule("""
    sequence:
      - match: {name: deploy}
      - match: {name: error, severity: {ge: 2}}
    within: 10m
""")
M = 60 * S


def step(name: str, t: int, subject: str = "svc", severity: int = 2) -> dict[str, Any]:
    return event(subject, name, t, severity=severity)


@pytest.mark.parametrize(("stream", "fired_at"), [
    ([("deploy", 0), ("error", 5 * M)], [5 * M]),
    ([("error", 0), ("deploy", 1 * M)], []),  # wrong order
    ([("deploy", 0), ("error", 11 * M)], []),  # out of window: reset
    ([("deploy", 0), ("deploy", 5 * M), ("error", 12 * M)], [12 * M]),  # the later start still counts
    ([("deploy", 0), ("error", 10 * M)], [10 * M]),  # inclusive
    ([("deploy", 0), ("error", 1 * M), ("error", 2 * M)], [1 * M]),  # fires once, then needs a new deploy
    ([("deploy", 0), ("error", 1 * M), ("deploy", 3 * M), ("error", 4 * M)], [1 * M, 4 * M]),
])
def test_sequence__steps_in_order_within_time(harness: Callable[[str], Harness], stream: list[tuple[str, int]],
                                              fired_at: list[int]) -> None:
    h = harness(SEQUENCE)
    assert [f.time_ms for f in h.feed([step(n, t) for n, t in stream])] == fired_at


def test_sequence__steps_must_match_fully_and_groups_are_separate(harness: Callable[[str], Harness]) -> None:
    h = harness(SEQUENCE)
    assert h.feed([step("deploy", 0), step("error", 1 * M, severity=1)]) == []
    assert h.feed([step("deploy", 2 * M, subject="a"), step("error", 3 * M, subject="b")]) == []
    fired = h.feed([step("error", 4 * M, subject="a")])
    assert [(f.group_key, f.value) for f in fired] == [("a", 120.0)]


def test_sequence__three_steps_and_repeated_step_kind(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("""
        sequence: [{match: {name: a}}, {match: {name: a}}, {match: {name: b}}]
        within: 1m
    """))
    assert h.feed([step("a", 0), step("b", 1)]) == []  # one `a` is not two
    assert [f.time_ms for f in h.feed([step("a", 2), step("b", 3)])] == [3]


def test_sequence__state_is_cleared_after_expiry(harness: Callable[[str], Harness]) -> None:
    h = harness(SEQUENCE)
    h.feed([step("deploy", 0)])
    assert h.store
    h.feed([step("error", 30 * M)])
    assert h.store == {}


# --- throttle and group_by ----------------------------------------------------------------------------

def test_throttle__at_most_once_per_group_per_window(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("match: {name: load}\nthrottle: {once_within: 5m}"))
    stream = [event("a", "load", 0), event("a", "load", 1 * M), event("b", "load", 2 * M),
              event("a", "load", 5 * M), event("a", "load", 9 * M), event("a", "load", 10 * M)]
    assert [(f.group_key, f.time_ms) for f in h.feed(stream)] == [
        ("a/load", 0), ("b/load", 2 * M), ("a/load", 5 * M), ("a/load", 10 * M)]


def test_throttle__applies_to_absence_firings_by_deadline_time(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("match: {name: heartbeat}\nabsent_for: 1m\nthrottle: {once_within: 10m}"))
    fired = h.feed(beats(0, 2 * M, 4 * M, 20 * M)) + h.advance(30 * M)
    # Silences end at 1, 3, 5 and 21 minutes; 3 and 5 fall within 10 minutes of the first firing.
    assert [f.time_ms for f in fired] == [1 * M, 21 * M]


@pytest.mark.parametrize(("group_by", "expected_groups"), [
    ("[subject]", ["a", "b"]),
    ("[tags.dc]", ["eu", "us"]),
    ("[subject, tags.dc]", ["a/eu", "b/eu", "b/us"]),
    ("[]", [""]),
    ("tags.dc", ["eu", "us"]),
    ("[tags.missing]", [""]),
])
def test_group_by__scopes_throttling(harness: Callable[[str], Harness], group_by: str,
                                     expected_groups: list[str]) -> None:
    h = harness(one_rule(f"match: {{name: x}}\ngroup_by: {group_by}\nthrottle: {{once_within: 1h}}"))
    stream = [event("a", "x", 1, tags={"dc": "eu"}), event("b", "x", 2, tags={"dc": "eu"}),
              event("b", "x", 3, tags={"dc": "us"}), event("a", "x", 4, tags={"dc": "eu"})]
    assert sorted(f.group_key for f in h.feed(stream)) == expected_groups


def test_group_by__values_are_exposed_on_the_firing(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("match: {name: x}\ngroup_by: [subject, severity, data.region]"))
    fired = h.feed([event("a", "x", 1, severity=2, extended='{"region": "eu/west"}')])
    assert fired[0].group == {"subject": "a", "severity": "2", "data.region": "eu/west"}
    assert fired[0].group_key == "a/2/eu%2Fwest"


def test_group_by__separate_register_windows(harness: Callable[[str], Harness]) -> None:
    h = harness(register_rule("avg", "{gt: 20}", "group_by: [subject]"))
    fired = h.feed(loads((0, 30), subject="hot") + loads((1, 10), subject="cold") + loads((2, 10), subject="hot"))
    assert [(f.group_key, f.value) for f in fired] == [("hot", 30.0)]  # hot avg drops to 20 (not > 20)
