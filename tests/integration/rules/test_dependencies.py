"""Dependency-aware alerting on real Kafka, with the real pipeline folding statuses: a rack switch
goes CRITICAL, its rack's hosts go CRITICAL -> their firings are held back with the reason, shown
by `vigil actions --suppressed` and `vigil trace`; a host of another rack still fires; the switch
recovers while one host is still down -> that host's firing is released exactly once (its
original action id), the host that recovered with the switch is not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from app.actions.cli import actions_command, trace_command
from app.config import Settings
from app.model.events import Event, now_ms
from app.pipeline.agents import Pipeline
from app.pipeline.config import PipelineConfig
from app.rules.stage import RulesStage, StageConfig
from app.rules.topics import ACTIONS_TOPIC, SUPPRESSED_TOPIC
from app.runtime.agent import AgentRegistry
from app.runtime.worker import WorkerOptions
from tests.conftest import wait_until
from tests.integration.rules.test_stage import KEY, cli, decoded, stage_settings
from tests.integration.runtime.kafka_helpers import json_values, produce_events, read_topic, worker_thread

__all__ = ["stage_settings"]  # the fixture, used by name

RULES = """\
rules:
  - name: host-down
    match: {name: ping, severity: {ge: 2}, tags.role: host}
    group_by: [subject]
    actions:
      - print: {text: "{{ event.subject }} is down"}
"""
DEPENDENCIES = """\
dependencies:
  - name: rack-switch
    dependents: {tags.rack: "*", tags.role: host}
    depends_on: {tags.role: switch, name: ping}
    equal: [tags.rack]
    settle: 2s
"""


def ping(subject: str, rack: str, role: str, severity: int) -> Event:
    return Event(subject=subject, name="ping", severity=severity, tags={"rack": rack, "role": role},
                 time=now_ms())


def test_switch_down__rack_hosts_held__released_once_on_recovery(stage_settings: Settings, tmp_path: Path) -> None:
    s = stage_settings
    rules = tmp_path / "rules"
    (rules / "dependencies").mkdir(parents=True)
    (rules / "hosts.yaml").write_text(RULES)
    (rules / "dependencies" / "racks.yaml").write_text(DEPENDENCIES)
    stage = RulesStage(StageConfig(rules_dir=rules, signing_key=KEY, settings=s, dependency_recheck_ms=200),
                       registry=AgentRegistry())
    pipeline = Pipeline(PipelineConfig.model_validate({}), registry=AgentRegistry())
    view = stage.dependency_view
    events = s.topic("events")
    try:
        with worker_thread(s, [pipeline.agent, *stage.agents],
                           WorkerOptions(app_id=f"deps-{uuid.uuid4().hex[:6]}", instance_id="w1",
                                         commit_interval_ms=100)):
            # The switch of rack r1 fails (r2's is fine); the view shows it once its status is folded.
            produce_events(s, events, [ping("sw1", "r1", "switch", 2), ping("sw2", "r2", "switch", 0)])
            wait_until(lambda: (view.row("sw1/ping") or {}).get("state") == "CRITICAL"
                       and view.row("sw2/ping") is not None, timeout_s=60, message="the switches' status in the view")

            produce_events(s, events, [ping("h1", "r1", "host", 2), ping("h2", "r1", "host", 2),
                                       ping("h3", "r2", "host", 2)])
            held = json_values(read_topic(s, s.topic(SUPPRESSED_TOPIC), expect=2, timeout_s=60))
            assert sorted(h["action"]["target"] for h in held) == ["h1", "h2"]
            reason = held[0]["dependency"]
            assert (reason["guard"], reason["dependency"], reason["identity"], reason["state"]) == \
                ("dependency", "rack-switch", "sw1/ping", "CRITICAL")
            [sent] = decoded(s, ACTIONS_TOPIC, expect=1)  # h3's switch is fine: it fires after its settle
            assert sent["target"] == "h3"

            listed = [json.loads(line) for line in cli(s, actions_command, ["--suppressed", "--json"]).splitlines()]
            assert sorted(r["target"] for r in listed) == ["h1", "h2"]
            assert {r["suppressed_by"]["dependency"] for r in listed} == {"rack-switch"}
            h1_id = next(h["action"]["id"] for h in held if h["action"]["target"] == "h1")
            trace = cli(s, trace_command, [h1_id])
            assert "SUPPRESSED by dependency rack-switch: sw1/ping is CRITICAL since" in trace

            # h2 recovers (before its switch), h1 stays down; then the switch recovers.
            produce_events(s, events, [ping("h2", "r1", "host", 0)])
            wait_until(lambda: view.row("h2/ping") is None, timeout_s=60, message="h2's recovery in the view")
            produce_events(s, events, [ping("sw1", "r1", "switch", 0)])
            wait_until(lambda: stage.metrics.snapshot()["vigil_rules_dependency_released"] == 1
                       and stage.metrics.snapshot()["vigil_rules_dependency_dropped"] == 1, timeout_s=60,
                       message="h1's firing released and h2's dropped")
            actions = decoded(s, ACTIONS_TOPIC, expect=2)
            assert stage.held() == []  # nothing left to release: exactly once
            exposed = generate_latest(stage.metrics.registry).decode()
    finally:
        stage.close()

    assert sorted(a["target"] for a in actions) == ["h1", "h3"]
    assert [a["id"] for a in actions if a["target"] == "h1"] == [h1_id]  # the original id (executors' ledger)
    assert 'vigil_rules_dependency_inhibited_total{dependency="rack-switch"} 2.0' in exposed
    assert 'vigil_rules_dependency_released_total{dependency="rack-switch"} 1.0' in exposed

    rows = {r["target"]: r for r in map(_json, cli(s, actions_command, ["--json"]).splitlines())}
    assert rows["h1"]["held_by"]["dependency"] == "rack-switch" and rows["h1"]["status"] == "PENDING"
    assert "held_by" not in rows["h3"]
    still = [_json(line) for line in cli(s, actions_command, ["--suppressed", "--json"]).splitlines()]
    assert [r["target"] for r in still] == ["h2"]  # recovered with its switch: never sent
    assert "(held by dependency rack-switch: sw1/ping is CRITICAL since" in cli(s, trace_command, [h1_id])


def _json(line: str) -> Any:
    return json.loads(line)
