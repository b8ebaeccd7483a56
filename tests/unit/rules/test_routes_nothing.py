"""RuleIndex.routes_nothing: the routers' pre-check is true only for records that group_keys would
route nowhere without raising."""

from __future__ import annotations

import pytest

from app.rules.engine import ALERT_TYPE, InvalidEventError, RuleIndex

from .conftest import event, ruleset_from

BY_NAME = """
rules:
  - name: load
    match: {name: load}
    count: {at_least: 2, within: 1m}
    actions: [{print: {}}]
"""


def test_routes_nothing__only_when_no_rule_can_match_and_the_time_is_valid() -> None:
    index = RuleIndex(ruleset_from(BY_NAME))
    disk, load = event(name="disk"), event(name="load")
    assert index.routes_nothing(disk) and index.group_keys(disk) == []
    assert not index.routes_nothing(load) and index.group_keys(load)
    # a transition, with no status rule; an invalid time is left to group_keys (it raises: dead-lettered)
    assert index.routes_nothing(event(name="disk"), ALERT_TYPE)
    bad = {**disk, "time": "soon"}
    assert not index.routes_nothing(bad)
    with pytest.raises(InvalidEventError):
        index.group_keys(bad)


def test_routes_nothing__never_with_rules_of_any_name_or_status_rules() -> None:
    index = RuleIndex(ruleset_from(BY_NAME + """
  - name: severe
    match: {severity: {ge: 2}}
    actions: [{print: {}}]
  - name: critical
    status: {to: CRITICAL}
    actions: [{print: {}}]
"""))
    assert not index.routes_nothing(event(name="disk"))
    assert not index.routes_nothing(event(name="disk"), ALERT_TYPE)
