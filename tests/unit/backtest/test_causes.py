"""CauseLog (app.backtest.causes): the records behind a firing, kept only while a rule may look back."""

from __future__ import annotations

from app.backtest.causes import MARGIN_MS, CauseLog
from tests.unit.rules.conftest import event, one_rule, ruleset_from

S = 1000


def test_groups_gone_quiet_are_forgotten_and_active_ones_still_name_their_causes() -> None:
    ruleset = ruleset_from(one_rule("""
        match: {name: login-failed}
        count: {at_least: 2, within: 1m}
    """))
    log = CauseLog(ruleset)
    first = event("gone", "login-failed", time=0)
    log.note("gone/login-failed", 0, first, "vigil.Event")
    for t in range(0, 10 * 60 * S, 30 * S):  # a busy group, long after `gone` went quiet
        log.note("busy/login-failed", t, event("busy", "login-failed", time=t), "vigil.Event")
    assert log.causes("r", "gone/login-failed", first["id"], 0) == (first["id"],)  # just its cause: forgotten
    assert set(log._noted) == {"busy/login-failed"}
    last, before = event("busy", "login-failed", time=570 * S), event("busy", "login-failed", time=540 * S)
    assert log.causes("r", "busy/login-failed", last["id"], 570 * S) == (before["id"], last["id"])


def test_a_group_is_kept_while_a_late_record_could_still_need_it() -> None:
    log = CauseLog(ruleset_from(one_rule("""
        match: {name: x}
        count: {at_least: 2, within: 1m}
    """)))
    log.note("a/x", 0, event("a", "x", time=0), "vigil.Event")
    log.note("b/x", 60 * S + 2 * MARGIN_MS - 1, event("b", "x", time=60 * S + 2 * MARGIN_MS - 1), "vigil.Event")
    assert set(log._noted) == {"a/x", "b/x"}
