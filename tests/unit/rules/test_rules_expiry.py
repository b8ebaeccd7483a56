"""Expiry of rule-group state (RuleEngine.expire): quiet groups lose their trigger state and throttle
after the retention, in event time; an absence not yet judged fires first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.rules.engine import EXPIRY_TIMER_PREFIX, Firing, RuleEngine
from app.rules.offline import EventTimeTimers
from app.runtime.expiry import check_at_ms
from tests.unit.rules.conftest import errors_of, event, one_rule, ruleset_from

S = 1000
H = 3_600_000
RETENTION = H


class Driver:
    """A rules engine over dict state whose timers (absence and expiry) fire by event time."""

    def __init__(self, yaml_text: str, retention_ms: int = RETENTION) -> None:
        self.store: dict[str, Any] = {}
        self.timers = EventTimeTimers()
        self.engine = RuleEngine(ruleset_from(yaml_text), self.store, self.timers,  # type: ignore[arg-type]
                                 state_retention_ms=retention_ms)
        self.firings: list[Firing] = []

    def advance(self, now_ms: int) -> None:
        while (due := self.timers.pop_due(now_ms)) is not None:
            key, at_ms, payload = due
            if key.startswith(EXPIRY_TIMER_PREFIX):
                self.engine.expire(key[len(EXPIRY_TIMER_PREFIX):], at_ms)
            else:
                self.firings += self.engine.on_timer(key, at_ms, payload)

    def feed(self, *records: Mapping[str, Any]) -> None:
        for record in records:
            self.advance(record["time"])
            self.firings += self.engine.on_event(record)

    @property
    def expired(self) -> dict[str, int]:
        return self.engine.expiry.counts


REGISTER = one_rule("""
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 1m}
    when: {gt: 100}
    throttle: {once_within: 10m}
""")


def test_register__a_quiet_group_is_forgotten_after_the_retention_an_active_one_is_kept() -> None:
    run = Driver(REGISTER)
    run.feed(event("web1", time=0, metrics={"load1": 1.0}), event("web2", time=0, metrics={"load1": 1.0}))
    for t in range(60 * S, 2 * H, 60 * S):  # web2 keeps reporting, web1 went quiet
        run.feed(event("web2", time=t, metrics={"load1": 1.0}))
    assert "r/register/web1/load" not in run.store
    assert "r/register/web2/load" in run.store
    assert run.expired == {"register": 1}


def test_register__not_forgotten_before_the_retention_passed() -> None:
    run = Driver(REGISTER)
    run.feed(event("web1", time=0, metrics={"load1": 1.0}))
    run.advance(RETENTION - 1)
    assert "r/register/web1/load" in run.store
    run.advance(check_at_ms(0, RETENTION))
    assert "r/register/web1/load" not in run.store


def test_throttle__kept_at_least_as_long_as_it_throttles() -> None:
    run = Driver(REGISTER.replace("once_within: 10m", "once_within: 3h"))
    run.feed(event("web1", time=0, metrics={"load1": 500.0}))
    assert len(run.firings) == 1
    run.advance(2 * H)  # past the 1h retention, within the 3h throttle
    assert "r/throttle/web1/load" in run.store
    run.feed(event("web1", time=2 * H + S, metrics={"load1": 500.0}))
    assert len(run.firings) == 1  # still throttled
    run.advance(6 * H)
    assert run.expired == {"register": 2, "throttle": 1}  # the register went quiet twice
    assert not run.store


def test_absent_for__a_pending_absence_fires_before_its_state_goes() -> None:
    run = Driver(one_rule("""
        match: {name: heartbeat}
        absent_for: 2h
    """))  # the absence (2h) is longer than the retention (1h)
    run.feed(event("web1", "heartbeat", time=0))
    run.advance(H + H // 2)
    assert "r/absent_for/web1/heartbeat" in run.store  # held: its alert is owed
    run.advance(2 * H)
    assert [(f.trigger, f.time_ms) for f in run.firings] == [("absent_for", 2 * H)]
    run.advance(4 * H)
    assert run.store == {}
    assert run.expired == {"absent_for": 1}
    assert len(run.firings) == 1  # forgetting it fires nothing


def test_absent_for__a_group_that_comes_back_after_expiry_is_watched_again() -> None:
    run = Driver(one_rule("""
        match: {name: heartbeat}
        absent_for: 10m
    """))
    run.feed(event("web1", "heartbeat", time=0))
    run.advance(3 * H)
    assert run.store == {}
    run.feed(event("web1", "heartbeat", time=3 * H))
    run.advance(4 * H)
    assert [f.time_ms for f in run.firings] == [10 * 60 * S, 3 * H + 10 * 60 * S]


def test_count_and_sequence__partial_state_of_quiet_groups_expires() -> None:
    run = Driver("""
rules:
  - name: c
    match: {name: login-failed}
    count: {at_least: 5, within: 1m}
    actions: [{print: {}}]
  - name: s
    match: {name: "*"}
    sequence: [{match: {name: deploy}}, {match: {name: error}}]
    within: 10m
    actions: [{print: {}}]
""")
    run.feed(event("web1", "login-failed", time=0), event("web1", "deploy", time=S))
    assert set(run.store) == {"c/count/web1/login-failed", "s/sequence/web1"}
    run.advance(3 * H)
    assert run.store == {}
    assert run.expired == {"count": 1, "sequence": 1}


def test_rule_state_retention__overrides_the_default_and_zero_keeps_forever() -> None:
    run = Driver("""
rules:
  - name: short
    match: {name: load}
    count: {at_least: 9, within: 1m}
    state_retention: 10m
    actions: [{print: {}}]
  - name: forever
    match: {name: load}
    count: {at_least: 9, within: 1m}
    state_retention: 0
    actions: [{print: {}}]
  - name: default
    match: {name: load}
    count: {at_least: 9, within: 1m}
    actions: [{print: {}}]
""")
    run.feed(event("web1", time=0))
    run.advance(40 * 60 * S)
    assert set(run.store) == {"forever/count/web1/load", "default/count/web1/load"}
    run.advance(100 * H)
    assert set(run.store) == {"forever/count/web1/load"}


def test_retention_zero_arms_no_expiry_timers() -> None:
    run = Driver(REGISTER, retention_ms=0)
    run.feed(event("web1", time=0, metrics={"load1": 500.0}))
    assert len(run.timers) == 0
    run.advance(1000 * H)
    assert set(run.store) == {"r/register/web1/load", "r/throttle/web1/load"}


def test_state_retention__must_be_a_duration() -> None:
    [error] = errors_of(one_rule("""
        match: {name: load}
        state_retention: soon
    """))
    assert "state_retention" in error and "not a duration" in error
