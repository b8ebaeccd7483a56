"""The summary per rule, the report file and the comparison of two rule sets."""

from __future__ import annotations

import json

from app.backtest.replayer import FiredAction
from app.backtest.report import compare_rule_sets, render_compare, render_summary, report_lines, summarize, summary_json

from .conftest import T0


def act(rule: str = "r", target: str = "web1", at_s: int = 0, ruleset: int = 0, index: int = 0,
        params: str = "{}", event_id: str = "e1", group: str | None = None) -> FiredAction:
    group_key = group or target
    firing = f"{rule}-{group_key}-{event_id}"  # ids come from the trigger, not the time (absent_for)
    return FiredAction(ruleset, f"{firing}-{index}", rule, "print", target, params, T0 + at_s * 1000, group_key,
                       event_id, event_id, None, (event_id,), f"{firing}-0")


def test_summarize__firings_actions_targets_first_and_last() -> None:
    actions = [act("a", "web1", 0), act("a", "web1", 0, index=1), act("a", "web2", 5), act("b", "db1", 3),
               act("a", "web9", 1, ruleset=1)]
    rows = summarize(actions)
    assert [(r.rule, r.firings, r.actions, r.targets, r.first_ms - T0, r.last_ms - T0) for r in rows] == [
        ("a", 2, 3, 2, 0, 5000), ("b", 1, 1, 1, 3000, 3000)]
    table = render_summary(rows).splitlines()
    assert table[0].split() == ["RULE", "FIRINGS", "ACTIONS", "TARGETS", "FIRST", "LAST"]
    assert table[1].split()[:4] == ["a", "2", "3", "2"]
    assert render_summary([]) == "no rule fired"


def test_report_lines__every_action_in_firing_order_with_its_causes() -> None:
    lines = list(report_lines([act("b", at_s=5), act("a", at_s=1, params='{"x":1}')]))
    records = [json.loads(line) for line in lines]
    assert [(r["rule"], r["time"] - T0, r["params"]) for r in records] == [("a", 1000, {"x": 1}), ("b", 5000, {})]
    assert set(records[0]) == {"id", "rule", "type", "target", "params", "time", "at", "group_key", "event_id",
                               "trace_id", "deadline", "causes", "firing"}
    assert records[0]["at"] == "2023-11-14T22:13:21.000Z" and records[0]["causes"] == ["e1"]
    assert lines == list(report_lines([act("a", at_s=1, params='{"x":1}'), act("b", at_s=5)]))  # order-free input


def test_compare__firings_only_in_a_only_in_b_and_in_both_per_rule_and_target() -> None:
    a = [act("hot", "web1", 0), act("hot", "web1", 60, event_id="e2"), act("hot", "web2", 5), act("cold", "db1", 9)]
    b = [act("hot", "web1", 0, ruleset=1), act("hot", "web2", 7, ruleset=1, event_id="e3"),
         act("cold", "db1", 9, ruleset=1, params='{"v":2}')]
    diffs = {(d.rule, d.target): d for d in compare_rule_sets(a + b)}
    assert [(len(d.only_a), len(d.only_b), d.both) for d in diffs.values()] == [(1, 0, 1), (1, 1, 0), (0, 0, 1)]
    web1 = diffs[("hot", "web1")]
    assert web1.to_json()["first_only_a"]["event_id"] == "e2"
    text = render_compare(compare_rule_sets(a + b))
    assert "ONLY A" in text and "hot" in text and "e3" in text
    sides = [json.loads(line) for line in report_lines(a + b, compare=True)]
    assert [(s["rule"], s["target"], s["side"]) for s in sides] == [
        ("hot", "web1", "both"), ("hot", "web2", "a"), ("hot", "web2", "b"), ("cold", "db1", "both"),
        ("hot", "web1", "a")]
    assert sides[3]["params_b"] == {"v": 2}
    summary = summary_json(a + b, 2)
    assert {r["rule"] for r in summary["rules_b"]} == {"hot", "cold"} and len(summary["compare"]) == 3


def test_compare__the_same_firing_at_another_time_has_moved() -> None:
    a = [act("hb-missing", "h1", 30, event_id="last-beat")]
    b = [act("hb-missing", "h1", 20, ruleset=1, event_id="last-beat")]
    (diff,) = compare_rule_sets(a + b)
    assert (len(diff.only_a), len(diff.only_b), diff.both, len(diff.moved)) == (0, 0, 1, 1)
    moved = diff.to_json()["first_moved"]
    assert (moved["time_a"] - T0, moved["time_b"] - T0, moved["event_id"]) == (30_000, 20_000, "last-beat")
    (line,) = [json.loads(x) for x in report_lines(a + b, compare=True)]
    assert (line["side"], line["time"] - T0, line["time_b"] - T0) == ("both", 30_000, 20_000)
    assert "(moved; last-beat)" in render_compare([diff])


def test_compare__identical_rule_sets() -> None:
    same = [act("hot", "web1", 0), act("hot", "web1", 0, ruleset=1)]
    assert render_compare(compare_rule_sets(same)).endswith("both rule sets fire the same")
    assert render_compare(compare_rule_sets([])) == "no rule fired under either rule set"
