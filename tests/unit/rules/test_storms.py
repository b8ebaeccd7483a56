"""The storm guard: causal chains in tags (app.model.chain), the decision (app.rules.storms), and
the rules stage holding back the actions of rules that would act again on their own events."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.actions.join import join_actions, suppression_text
from app.model.chain import Chain, chain_of, follow_on_tags
from app.model.signing import sign_action, verify_action
from app.rules.stage import SUPPRESSED_TOPIC, StageConfig
from app.rules.storms import storm_verdict

from .conftest import alert, event
from .stage_helpers import KEY, StageRun, write_rules


def chained(*rules: str, **fields: object) -> dict:
    tags = follow_on_tags(list(rules[:-1]), rules[-1]) if rules else {}
    return {"tags": tags, **fields}


@pytest.mark.parametrize(("tags", "chain"), [
    ({}, Chain()),
    ({"vigil.chain.rules": "a,b", "vigil.chain.depth": "2"}, Chain(("a", "b"), 2)),
    ({"vigil.chain.rules": "a", "vigil.chain.depth": "7"}, Chain(("a",), 7)),     # hops by other tools
    ({"vigil.chain.rules": "a,b", "vigil.chain.depth": "x"}, Chain(("a", "b"), 2)),  # junk depth
    ({"vigil.chain.depth": "4"}, Chain((), 4)),
    ({"other": "tag"}, Chain()),
])
def test_chain_of__reads_the_tags(tags, chain) -> None:
    assert chain_of({"tags": tags}) == chain
    assert chain_of({"tags": None}) == Chain() and chain_of({}) == Chain()


def test_follow_on_tags__extend_the_cause_chain_with_the_rule() -> None:
    assert follow_on_tags([], "a") == {"vigil.chain.rules": "a", "vigil.chain.depth": "1"}
    assert chain_of({"tags": follow_on_tags(["a", "b"], "c")}) == Chain(("a", "b", "c"), 3)


@pytest.mark.parametrize(("chain", "rule", "reason"), [
    (Chain(), "a", None),                        # an event no action produced
    (Chain(("a",), 1), "b", None),               # a's event, b acts on it
    (Chain(("a",), 1), "a", "cycle"),            # a's own event back to a
    (Chain(("a", "b"), 2), "a", "cycle"),        # a -> b -> a
    (Chain(("a", "b", "c"), 3), "d", None),      # at the limit (3)
    (Chain(("a", "b", "c", "d"), 4), "e", "depth"),
    (Chain((), 4), "e", "depth"),
])
def test_storm_verdict(chain, rule, reason) -> None:
    verdict = storm_verdict(chain, rule, 3)
    assert (verdict.reason if verdict else None) == reason


def test_signature__covers_a_chain_and_is_unchanged_without_one() -> None:
    record = {"id": "a1", "time": 1, "rule": "r", "type": "print", "target": "t", "params": "{}", "group_key": "",
              "event_id": None, "trace_id": None, "deadline": None}
    plain = sign_action(record, KEY)
    assert sign_action({**record, "chain": []}, KEY) == plain, "actions without a chain sign as before"
    signed = {**record, "chain": ["x"], "signature": sign_action({**record, "chain": ["x"]}, KEY)}
    assert verify_action(signed, KEY)
    assert not verify_action({**signed, "chain": []}, KEY) and not verify_action({**signed, "chain": ["y"]}, KEY)


CYCLE = """\
rules:
  - name: a
    match: {name: ping}
    actions:
      - fire_event: {subject: "{{ event.subject }}", name: pong}
  - name: b
    match: {name: pong}
    actions:
      - fire_event: {subject: "{{ event.subject }}", name: ping}
      - print: {}
"""


def test_stage__cycle_is_held_back_recorded_and_counted(tmp_path: Path) -> None:
    write_rules(tmp_path, CYCLE)
    run = StageRun(tmp_path)
    root = event("h1", "ping", 0)
    run.feed([root])                                                         # a fires (chain [])
    [a1] = run.actions()
    assert (a1.rule, a1.chain) == ("a", [])
    run.feed([event("h1", "pong", 1, tags=follow_on_tags(a1.chain, "a"), trace_id=root["id"])])  # b fires
    b_actions = run.actions()[1:]
    assert [(x.rule, x.type, x.chain) for x in b_actions] == [("b", "fire_event", ["a"]), ("b", "print", ["a"])]
    assert all(verify_action(x.to_record(), KEY) for x in b_actions), "the chain is signed with the rest"
    again = event("h1", "ping", 2, tags=follow_on_tags(b_actions[0].chain, "b"), trace_id=root["id"])
    run.feed([again])                                                        # a again: held back
    assert len(run.actions()) == 3, "nothing more was sent"
    [held] = [o.value for o in run.outputs(SUPPRESSED_TOPIC)]
    assert held["action"]["rule"] == "a" and held["action"]["chain"] == ["a", "b"]
    assert held["action"]["event_id"] == again["id"] and held["action"]["trace_id"] == root["id"]
    assert held["storm"]["reason"] == "cycle" and "rule a is already in this event's causal chain (a → b)" \
        in held["storm"]["detail"]
    assert run.stage.metrics.snapshot()["vigil_rules_storm_suppressed"]["total"] == 1
    [row] = join_actions([], [], [held])
    assert row.status == "SUPPRESSED" and suppression_text(row.suppressed).startswith("by the storm guard (cycle:")


def test_stage__chain_deeper_than_the_limit_is_not_acted_on(tmp_path: Path) -> None:
    write_rules(tmp_path, "rules: [{name: z, match: {name: x}, actions: [{print: {}}]}]")
    run = StageRun(tmp_path, max_chain_depth=2)
    run.feed([event("h", "x", 0, **chained("a", "b")), event("h", "x", 1, **chained("a", "b", "c"))])
    assert [a.chain for a in run.actions()] == [["a", "b"]]
    [held] = [o.value for o in run.outputs(SUPPRESSED_TOPIC)]
    assert (held["storm"]["reason"], held["storm"]["depth"], held["storm"]["max_depth"]) == ("depth", 3, 2)


def test_stage__the_chain_survives_a_status_transition(tmp_path: Path) -> None:
    write_rules(tmp_path, "rules: [{name: s, status: {to: CRITICAL}, actions: [{print: {}}]}]")
    run = StageRun(tmp_path)
    run.feed([alert("h", "disk", 0, **chained("s"))], topic="alerts", type_name="vigil.Alert")
    assert run.actions() == [] and len(run.outputs(SUPPRESSED_TOPIC)) == 1


def test_stage_config__depth_limit_from_the_environment(tmp_path: Path) -> None:
    assert StageConfig.from_settings(None, {"VIGIL_RULES_MAX_CHAIN_DEPTH": "5"}).max_chain_depth == 5
    assert StageConfig.from_settings(None, {}).max_chain_depth == 3
    with pytest.raises(ValueError, match="VIGIL_RULES_MAX_CHAIN_DEPTH='0'"):
        StageConfig.from_settings(None, {"VIGIL_RULES_MAX_CHAIN_DEPTH": "0"})
