"""The rules stage on the runtime harness: repartitioning, deterministic signed actions, absence
timers across restarts, silences, render failures, hot reload and state reconciliation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.model.signing import verify_action
from app.rules.loader import load_rules
from app.rules.offline import simulate
from app.rules.silences import Silence, SilenceSet
from app.rules.stage import ACTIONS_DLQ_TOPIC, REPARTITION_TOPIC, SUPPRESSED_TOPIC
from app.runtime.testing import partition_for

from .conftest import REPO, alert, event
from .stage_helpers import KEY, StageRun, write_rules

S = 1000


def client_loads(values: list[float], *, subject: str = "c1", start_ms: int = 0) -> list[dict[str, Any]]:
    return [event(subject, "load", start_ms + i * S, tags={"class": "client"}, metrics={"load1": v})
            for i, v in enumerate(values)]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    path = tmp_path / "rules"
    path.mkdir()
    return path


def test_example__one_action_per_type_per_throttle_window__same_ids_as_offline(rules_dir: Path) -> None:
    shutil.copy(REPO / "rules" / "load.yaml", rules_dir)
    run = StageRun(rules_dir)
    above = client_loads([30.0, 20.0] * 90)  # 3 minutes averaging 25
    below = client_loads([5.0, 15.0] * 90, subject="c2")  # averaging 10
    run.feed(above + below)

    actions = run.actions()
    assert [(a.type, a.time) for a in actions] == [(t, ms) for ms in (0, 60 * S, 120 * S)
                                                   for t in ("print", "fire_event")]
    assert [o.key for o in run.outputs("actions")] == ["c1"] * 6  # keyed by target
    # Deterministic: exactly the ids the offline simulator derives (so a replay gives the same ids).
    assert [a.id for a in actions] == [a.id for a in simulate(load_rules(rules_dir)[0], above).actions]
    assert all(verify_action(a.to_record(), KEY) for a in actions)
    forged = {**actions[0].to_record(), "target": "elsewhere"}
    assert not verify_action(forged, KEY)
    assert actions[0].event_id == above[0]["id"] and actions[0].trace_id == above[0]["id"]


def test_unsigned_when_no_key(rules_dir: Path) -> None:
    write_rules(rules_dir, "rules: [{name: r, match: {name: x}, actions: [{print: {}}]}]")
    run = StageRun(rules_dir, signing_key=None)
    run.feed([event("h", "x", 0)])
    assert [a.signature for a in run.actions()] == [None]


def test_group_by_subject__one_group_across_event_keys_and_partitions(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: two-checks
            match: {name: "check*"}
            group_by: [subject]
            count: {at_least: 2, within: 1m}
            actions: [{print: {}}]
          - name: each-check
            match: {name: "check*"}
            actions: [{print: {}}]
    """)
    run = StageRun(rules_dir, partitions=8)
    assert partition_for("web1/check-a", 8) != partition_for("web1/check-b", 8)  # the point of the test
    run.feed([event("web1", "check-a", 0), event("web1", "check-b", S)])

    assert sorted(o.key for o in run.outputs(REPARTITION_TOPIC)) == \
        ["g:web1", "g:web1", "g:web1/check-a", "g:web1/check-b"]
    # Each rule evaluated once per event, although the event reached `evaluate` twice.
    assert sorted((a.rule, a.group_key) for a in run.actions()) == \
        [("each-check", "web1/check-a"), ("each-check", "web1/check-b"), ("two-checks", "web1")]


def test_group_by_nothing__empty_group_key_still_has_one_partition(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - {name: all, match: {name: x}, group_by: [], count: {at_least: 3, within: 1m}, actions: [{print: {}}]}
    """)
    run = StageRun(rules_dir, partitions=4)
    run.feed([event(f"h{i}", "x", i * S) for i in range(3)])
    assert {o.key for o in run.outputs(REPARTITION_TOPIC)} == {"g:"}
    assert [(a.rule, a.group_key, a.target) for a in run.actions()] == [("all", "", "h2")]


def test_status_rule__fires_on_transitions_from_alerts(rules_dir: Path) -> None:
    shutil.copy(REPO / "rules" / "status.yaml", rules_dir)
    run = StageRun(rules_dir)
    cause = "0190a1b2-0000-7000-8000-000000000001"
    run.feed([alert("db1", "disk", 5 * S, tags={"env": "prod"}, cause_event_id=cause),
              alert("db2", "disk", 6 * S, tags={"env": "dev"})], topic="alerts", type_name="vigil.Alert")
    (action,) = run.actions()
    assert (action.rule, action.type, action.target, action.event_id) == \
        ("critical-to-webhook", "http", "incidents-webhook", cause)
    assert json.loads(action.params)["json"]["summary"] == "db1 disk is CRITICAL (was OK)"


def test_transitions_on_events_topic_are_not_evaluated_as_events(rules_dir: Path) -> None:
    write_rules(rules_dir, "rules: [{name: r, match: {subject: db1}, actions: [{print: {}}]}]")
    run = StageRun(rules_dir)
    run.feed([alert("db1", "disk", 0)], type_name="vigil.Alert")
    assert run.actions() == [] and run.outputs(REPARTITION_TOPIC) == []


def test_absent_for__fires_once_when_heartbeat_stops__timer_survives_restart(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: hb
            match: {name: heartbeat}
            group_by: [subject]
            absent_for: 30s
            actions: [{print: {text: "silent for {{ value | int }}s"}}]
    """)
    run = StageRun(rules_dir)
    run.feed([event("h1", "heartbeat", 0)])
    run.advance(10 * S)
    run.feed([event("h1", "heartbeat", 10 * S)])
    run.advance(25 * S)  # 35 s: 25 s since the last heartbeat
    assert run.actions() == []
    run.restart(new_process=True)
    run.advance(10 * S)  # 45 s: the deadline (40 s) has passed
    (action,) = run.actions()
    assert (action.rule, action.time, json.loads(action.params)) == ("hb", 40 * S, {"text": "silent for 30s"})
    run.advance(120 * S)
    assert len(run.actions()) == 1  # once per silence
    run.feed([event("h1", "heartbeat", 170 * S)])
    run.advance(40 * S)
    assert [a.time for a in run.actions()] == [40 * S, 200 * S]  # the next heartbeat re-armed it


DISK_RULE = """
    rules:
      - {name: disk-full, match: {name: disk}, actions: [{print: {}}, {shell: {command: clean-tmp}}]}
"""


def test_silence__covered_actions_recorded_as_suppressed_not_sent(rules_dir: Path) -> None:
    write_rules(rules_dir, DISK_RULE)
    silences = SilenceSet()
    silences.add(Silence(id="s1", match={"subject": "web*", "action": "shell"}, rule="disk-*",
                         until_ms=60 * S, reason="patching web", created_ms=0))
    run = StageRun(rules_dir, silences=silences)
    run.feed([event("web1", "disk", 0), event("db1", "disk", 0)])

    assert sorted((a.target, a.type) for a in run.actions()) == \
        [("db1", "print"), ("db1", "shell"), ("web1", "print")]
    (suppressed,) = run.outputs(SUPPRESSED_TOPIC)
    assert suppressed.key == "web1"
    assert suppressed.value["silence"] == {"id": "s1", "reason": "patching web", "until_ms": 60 * S,
                                           "rule": "disk-*", "match": {"subject": "web*", "action": "shell"}}
    assert suppressed.value["action"]["type"] == "shell" and verify_action(suppressed.value["action"], KEY)
    assert run.stage.describe(0)["counters"]["vigil_rules_actions_suppressed"]["total"] == 1

    run.advance(60 * S)  # the silence has ended
    run.feed([event("web1", "disk", 60 * S)])
    assert [a.type for a in run.actions() if a.target == "web1"] == ["print", "print", "shell"]


def test_render_failure__action_to_actions_dlq_with_reason__others_still_sent(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: r
            match: {name: x}
            actions:
              - print: {text: "{{ event.tags.missing }}"}
              - print: {}
    """)
    run = StageRun(rules_dir)
    ev = event("h1", "x", 0)
    run.feed([ev])
    assert [json.loads(a.params) for a in run.actions()] == [{}]
    (dead,) = run.outputs(ACTIONS_DLQ_TOPIC)
    assert dead.key == "r" and dead.headers["vigil.rule"] == "r"
    assert "missing" in dead.value["reason"] and "missing" in dead.headers["vigil.error"]
    assert (dead.value["action_index"], dead.value["event_id"]) == (0, ev["id"])
    assert run.harness.dead_letters == []


def test_invalid_event__dead_lettered_by_the_router_with_reason(rules_dir: Path) -> None:
    write_rules(rules_dir, "rules: [{name: r, match: {name: x}, actions: [{print: {}}]}]")
    run = StageRun(rules_dir)
    run.feed([{**event("h1", "x", 0), "time": "yesterday"}])
    (dead,) = run.harness.dead_letters
    assert dead.agent == "rules_route_events" and "InvalidEventError" in dead.error and "time" in dead.error


def test_hot_reload__changes_picked_up__broken_file_keeps_previous_version(rules_dir: Path) -> None:
    path = write_rules(rules_dir, "rules: [{name: r, match: {name: a}, actions: [{print: {}}]}]")
    run = StageRun(rules_dir)
    run.feed([event("h", "a", 0)])
    assert len(run.actions()) == 1

    write_rules(rules_dir, "rules:\n  - name: r\n    match: {name: a\n")  # broken YAML
    run.advance(2 * S)  # the reload timer checks the directory
    info = run.stage.describe(2 * S)
    assert [r["name"] for r in info["rules"]] == ["r"]
    assert len(info["errors"]) == 1 and info["errors"][0].startswith(f"{path}:")
    assert info["counters"]["vigil_rules_file_errors"] == 1
    run.feed([event("h", "a", 2 * S)])
    assert len(run.actions()) == 2  # the previous version is still active

    write_rules(rules_dir, "rules: [{name: r, match: {name: b}, actions: [{print: {}}]}]")
    run.feed([event("h", "b", 3 * S)])
    assert len(run.actions()) == 2  # checked at most every 2 s
    run.advance(2 * S)
    run.feed([event("h", "b", 4 * S), event("h", "a", 4 * S)])
    assert [a.group_key for a in run.actions()] == ["h/a", "h/a", "h/b"]
    assert run.stage.describe(4 * S)["errors"] == []


COUNT_RULE = """
    rules:
      - {name: cnt, match: {name: x}, count: {at_least: 3, within: %s}, actions: [{print: {}}]}
      - {name: other, match: {name: %s}, actions: [{print: {}}]}
"""


@pytest.mark.parametrize(("within", "other", "new_process", "fires"), [
    ("1m", "y", False, True),   # nothing changed: state kept
    ("1m", "z", True, True),    # another rule changed (while down): this one's state kept
    ("2m", "y", False, False),  # its trigger changed: its state starts afresh
    ("2m", "y", True, False),   # ... also when it changed while the worker was down
])
def test_reload__keeps_state_of_unchanged_rules_resets_changed_ones(rules_dir: Path, within: str, other: str,
                                                                    new_process: bool, fires: bool) -> None:
    write_rules(rules_dir, COUNT_RULE % ("1m", "y"))
    run = StageRun(rules_dir)
    run.feed([event("h", "x", 0), event("h", "x", S)])
    write_rules(rules_dir, COUNT_RULE % (within, other))
    if new_process:
        run.restart(new_process=True)
    run.advance(2 * S)
    run.feed([event("h", "x", 2 * S)])
    assert [a.rule for a in run.actions()] == (["cnt"] if fires else [])


def test_reload__unchanged_or_empty_directory_is_not_a_new_rule_set(rules_dir: Path) -> None:
    stage = StageRun(rules_dir).stage
    stage.describe(0)  # empty directory: no rules, no errors
    stage.describe(2 * S)
    write_rules(rules_dir, "rules: [{name: r, match: {name: a}, actions: [{print: {}}]}]")
    stage.describe(4 * S)
    (rules_dir / "rules.yaml").touch()
    stage.describe(6 * S)
    assert stage.describe(8 * S)["counters"]["vigil_rules_reloads"] == 2  # the first load, then the new file
