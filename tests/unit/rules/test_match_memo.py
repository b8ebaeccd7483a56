"""RuleIndex's match memo: a record routed and evaluated in one process (a backtest) is matched once;
the firings are the same as without the memo, and the memo forgets a record once each of its groups
has taken it."""

from __future__ import annotations

from typing import Any

from app.rules.engine import RuleEngine, RuleIndex
from app.rules.offline import EventTimeTimers

from .conftest import event, ruleset_from

RULES = """
rules:
  - name: per-identity
    match: {name: load}
    count: {at_least: 2, within: 1m}
    actions: [{print: {}}]
  - name: per-class
    match: {name: load}
    group_by: [tags.class]
    count: {at_least: 2, within: 1m}
    actions: [{print: {}}]
  - name: fleet
    group_by: []
    count: {at_least: 3, within: 1m}
    actions: [{print: {}}]
"""


def _firings(memo_size: int, events: list[dict[str, Any]]) -> tuple[list[tuple[str, str, int]], RuleIndex]:
    ruleset = ruleset_from(RULES)
    index = RuleIndex(ruleset, memo_size=memo_size)
    engine = RuleEngine(ruleset, {}, EventTimeTimers(), index=index)  # type: ignore[arg-type]
    out = []
    for record in events:
        for group in index.group_keys(record):  # routing, then each group's evaluation, as a backtest does
            out += [(f.rule, f.group_key, f.time_ms) for f in engine.on_event(record, only_group=group)]
    return out, index


def test_memo_gives_the_same_firings_and_forgets_evaluated_records() -> None:
    events = [event("web1", "load", t * 1000, tags={"class": "web"}) for t in range(5)]
    without, _ = _firings(0, events)
    with_memo, index = _firings(16, events)
    assert with_memo == without
    assert ("fleet", "", 2000) in without and ("per-class", "web", 1000) in without
    assert index._memo == {}


def test_take_matches_needs_the_same_object_and_type() -> None:
    index = RuleIndex(ruleset_from(RULES), memo_size=16)
    record = event("web1", "load", 0, tags={"class": "web"})
    keys = index.group_keys(record)
    assert keys == ["web1/load", "web", ""]
    assert index.take_matches(dict(record), "vigil.Event") is None  # an equal copy is not remembered
    assert index.take_matches(record, "other.Type") is None
    for _ in keys:
        assert index.take_matches(record, "vigil.Event") is not None
    assert index.take_matches(record, "vigil.Event") is None  # every group took it


def test_memo_is_bounded_and_off_by_default() -> None:
    ruleset = ruleset_from(RULES)
    off = RuleIndex(ruleset)
    off.group_keys(event("web1", "load", 0))
    assert off._memo == {}
    bounded = RuleIndex(ruleset, memo_size=4)
    records = [event(f"web{i}", "load", 0) for i in range(10)]  # routed, never evaluated here
    for record in records:
        bounded.group_keys(record)
    assert 0 < len(bounded._memo) <= 4


def test_forget_matches_drops_what_was_routed_elsewhere() -> None:
    index = RuleIndex(ruleset_from(RULES), memo_size=16)
    record = event("web1", "load", 0)
    index.group_keys(record)
    index.forget_matches()
    assert index.take_matches(record, "vigil.Event") is None
