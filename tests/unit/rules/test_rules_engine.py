"""The engine end to end: the shipped example rule, dispatch, custom types, invalid input, hot reload,
and replay determinism."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.actions import render_actions
from app.rules.engine import InvalidEventError, RuleEngine
from app.rules.loader import RuleSet, load_rules
from app.rules.offline import EventTimeTimers, simulate

from .conftest import DATA, REPO, Harness, event, one_rule, ruleset_from

S = 1000
EXAMPLE_RULES, _ = load_rules(REPO / "rules")


def client_loads(values: list[float], *, subject: str = "c1", step_ms: int = S, start_ms: int = 0,
                 cls: str = "client") -> list[dict[str, Any]]:
    return [event(subject, "load", start_ms + i * step_ms, tags={"class": cls}, metrics={"load1": v})
            for i, v in enumerate(values)]


def example_firings(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    result = simulate(EXAMPLE_RULES, records)
    return [(f.group_key, f.time_ms) for f in result.firings if f.rule == "client-load-high"]


def test_example__fires_once_per_throttle_window_while_average_is_above_20() -> None:
    # 18, 32, 18, 32 ... every second for 5 minutes: every 10 s window averages > 20 after the first sample.
    records = client_loads([18.0, 32.0] * 150)
    times = [t for _, t in example_firings(records)]
    assert times == [1 * S, 61 * S, 121 * S, 181 * S, 241 * S]


def test_example__renders_both_actions_as_written() -> None:
    result = simulate(EXAMPLE_RULES, client_loads([18.0, 32.0]))
    print_action, fire_event = result.actions
    assert (print_action.type, print_action.target, print_action.params) == ("print", "c1", {})
    assert fire_event.type == "fire_event" and fire_event.target == "c1"
    assert fire_event.params == {"subject": "lb", "name": "reconfig", "kind": "archive",
                                 "data": {"reason": "load on c1 is 25.0"}}


def test_example__never_fires_while_average_is_at_most_20() -> None:
    assert example_firings(client_loads([15.0, 24.0] * 150)) == []
    assert example_firings(client_loads([20.0] * 100)) == []  # `gt`, not `ge`


def test_example__only_clients_and_each_subject_throttled_separately() -> None:
    records = sorted(client_loads([30.0] * 3, subject="a") + client_loads([30.0] * 3, subject="b")
                     + client_loads([99.0] * 3, subject="srv", cls="server"), key=lambda r: r["time"])
    assert example_firings(records) == [("a/load", 0), ("b/load", 0)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.floats(20.01, 500)), min_size=1, max_size=60))
def test_example__property_above_20_fires_exactly_once_per_window(gaps_values: list[tuple[int, float]]) -> None:
    t, records = 0, []
    for gap_s, value in gaps_values:
        t += gap_s * S
        records.append(event("c1", "load", t, tags={"class": "client"}, metrics={"load1": value}))
    expected, last = [], None
    for record in records:  # every event sees avg > 20; the 1 m throttle lets the first of each window through
        if last is None or record["time"] - last >= 60 * S:
            expected.append(record["time"])
            last = record["time"]
    assert [t for _, t in example_firings(records)] == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.floats(0, 20)), min_size=1, max_size=60))
def test_example__property_at_most_20_never_fires(gaps_values: list[tuple[int, float]]) -> None:
    records = [event("c1", "load", sum(g for g, _ in gaps_values[:i + 1]) * S, tags={"class": "client"},
                     metrics={"load1": v}) for i, (_, v) in enumerate(gaps_values)]
    assert example_firings(records) == []


def test_replay__same_input_gives_identical_firings_and_action_ids() -> None:
    records = [*client_loads([18.0, 32.0] * 100), event("h1", "heartbeat", 0), event("h1", "heartbeat", 500 * S)]
    records.sort(key=lambda r: r["time"])
    first, second = simulate(EXAMPLE_RULES, records), simulate(EXAMPLE_RULES, records)
    assert first.firings == second.firings
    assert [a.to_dict() for a in first.actions] == [a.to_dict() for a in second.actions]
    assert len({a.id for a in first.actions}) == len(first.actions)


# --- dispatch and input -------------------------------------------------------------------------------

def test_dispatch__firings_follow_rule_order_for_indexed_and_wildcard_rules(harness: Callable[[str], Harness]) -> None:
    h = harness("""
        rules:
          - {name: any-1, match: {subject: w*}, actions: [{print: {}}]}
          - {name: load-1, match: {name: load}, actions: [{print: {}}]}
          - {name: disk-1, match: {name: disk}, actions: [{print: {}}]}
          - {name: any-2, match: {severity: 0}, actions: [{print: {}}]}
          - {name: load-2, match: {name: {in: [load, cpu]}}, actions: [{print: {}}]}
          - {name: disabled, enabled: false, match: {name: load}, actions: [{print: {}}]}
    """)
    assert [f.rule for f in h.feed([event("w1", "load", 1)])] == ["any-1", "load-1", "any-2", "load-2"]
    assert [f.rule for f in h.feed([event("w1", "other", 2)])] == ["any-1", "any-2"]


def test_custom_types__type_data_and_numeric_fields(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("""
        match: {type: acme.Build, data.result: failed, data.repo.name: "vigil*"}
        register: {metric: duration_s, aggregate: max, period: 1h}
        when: {gt: 600}
    """))
    build = {"subject": "ci", "name": "build", "time": 5, "result": "failed", "repo": {"name": "vigil-app"},
             "duration_s": 900}
    assert h.feed([build], event_type="vigil.Event") == []  # data.* of vigil.Event reads `extended`
    fired = h.feed([build], event_type="acme.Build")
    assert [(f.value, f.event_type) for f in fired] == [(900.0, "acme.Build")]
    assert fired[0].trigger_id.startswith("register:sha256:")  # id-less records get a content hash


@pytest.mark.parametrize("record", [
    {"subject": "a", "name": "b"}, {"subject": "a", "name": "b", "time": "10"},
    {"subject": "a", "name": "b", "time": True}, {"subject": "a", "name": "b", "time": 1.5}, ["not", "a", "dict"],
])
def test_invalid_input__raises_a_clear_error(harness: Callable[[str], Harness], record: Any) -> None:
    h = harness(one_rule("match: {name: b}"))
    with pytest.raises(InvalidEventError, match=r"time|mapping"):
        h.engine.on_event(record)
    with pytest.raises(InvalidEventError):
        h.engine.on_transition(record)


def test_invalid_input__float_time_with_integer_value_is_accepted(harness: Callable[[str], Harness]) -> None:
    h = harness(one_rule("match: {name: b}"))
    assert len(h.engine.on_event({"subject": "a", "name": "b", "time": 10.0})) == 1


# --- hot reload -------------------------------------------------------------------------------------

RELOAD_V1 = """
rules:
  - name: avg
    match: {name: load}
    register: {metric: load1, aggregate: count, period: 1h}
    when: {ge: 3}
    actions: [{print: {}}]
  - name: silent
    match: {name: heartbeat}
    absent_for: 1m
    actions: [{print: {}}]
  - name: gone
    match: {name: load}
    count: {at_least: 10, within: 1h}
    actions: [{print: {}}]
"""


def test_reload__keeps_state_of_unchanged_rules_and_resets_changed_ones() -> None:
    h = Harness(ruleset_from(RELOAD_V1))
    h.feed([event("w", "load", 1, metrics={"load1": 1.0}), event("w", "load", 2, metrics={"load1": 1.0}),
            event("h", "heartbeat", 3)])
    assert {k.split("/")[0] for k in h.store} == {"avg", "silent", "gone"} and len(h.timers) == 1

    v2 = RELOAD_V1.replace("actions: [{print: {}}]\n  - name: silent", "actions: [{print: {x: 1}}]\n  - name: silent")
    v2 = v2.replace("absent_for: 1m", "absent_for: 2m").split("  - name: gone")[0]
    report = h.engine.replace_ruleset(ruleset_from(v2))
    assert (report.kept, report.reset, report.removed, report.added) == (("avg",), ("silent",), ("gone",), ())
    assert {k.split("/")[0] for k in h.store} == {"avg"} and len(h.timers) == 0

    # The kept register window still holds its two samples: the third fires.
    fired = h.feed([event("w", "load", 4, metrics={"load1": 1.0})])
    assert [(f.rule, f.value) for f in fired] == [("avg", 3.0)]


def test_reload__actions_only_change_keeps_state_and_uses_new_actions() -> None:
    h = Harness(ruleset_from(RELOAD_V1))
    h.feed([event("w", "load", 1, metrics={"load1": 1.0}), event("w", "load", 2, metrics={"load1": 1.0})])
    new = ruleset_from(RELOAD_V1.replace("{print: {}}", "{print: {v: '{{ value }}'}}", 1))
    assert h.engine.replace_ruleset(new).kept == ("avg", "silent", "gone")
    result = simulate(new, [])  # sanity: the new rule set is usable on its own
    assert result.actions == []
    (firing,) = [f for f in h.feed([event("w", "load", 3, metrics={"load1": 1.0})]) if f.rule == "avg"]
    assert firing.value == 3.0


def test_reload__disabling_a_rule_drops_its_state() -> None:
    h = Harness(ruleset_from(RELOAD_V1))
    h.feed([event("h", "heartbeat", 3)])
    disabled = RELOAD_V1.replace("  - name: silent\n", "  - name: silent\n    enabled: false\n")
    assert h.engine.replace_ruleset(ruleset_from(disabled)).removed == ("silent",)
    assert not any(k.startswith("silent/") for k in h.store) and len(h.timers) == 0
    assert h.advance(10**9) == []


# --- robustness ---------------------------------------------------------------------------------------

EVERY_TRIGGER = RuleSet(tuple([*EXAMPLE_RULES, *load_rules(DATA / "golden" / "rules")[0]]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=6))
JSONISH = st.recursive(SCALARS,
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                       max_leaves=6)
ODD_EVENTS = st.fixed_dictionaries(
    {"time": st.integers(0, 10**7)},
    optional={"subject": JSONISH, "name": st.one_of(st.sampled_from(["load", "heartbeat", "login", "disk", "deploy"]),
                                                   JSONISH),
              "tags": JSONISH, "metrics": JSONISH, "severity": JSONISH, "kind": JSONISH, "extended": JSONISH,
              "id": JSONISH, "duration_s": JSONISH, "branch": JSONISH},
)


@settings(max_examples=100, deadline=None)
@given(records=st.lists(ODD_EVENTS, max_size=8), event_type=st.sampled_from(["vigil.Event", "acme.Build"]))
def test_engine__never_raises_on_odd_events_with_a_valid_time(records: list[dict[str, Any]], event_type: str) -> None:
    engine = RuleEngine(EVERY_TRIGGER, {}, EventTimeTimers())  # type: ignore[arg-type]
    for record in records:
        firings = engine.on_event(record, event_type)
        firings += engine.on_transition({**record, "from_state": record.get("kind"), "to_state": "CRITICAL"})
        for firing in firings:  # rendering turns every problem into a RenderFailure
            rule = EVERY_TRIGGER.get(firing.rule)
            assert rule is not None
            render_actions(firing, rule)
