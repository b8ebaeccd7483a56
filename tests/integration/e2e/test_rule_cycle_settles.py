"""End to end: a rule set with an accidental cycle (A fires an event B matches, B fires one A
matches) on a real worker (the rules stage) and a real executor over Kafka settles after one
round: A and B act once each, A's second turn is held back by the storm guard, recorded on
actions-suppressed, counted, and shown by `vigil trace`."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

from click.testing import CliRunner

from app.actions.cli import trace_command
from app.cli import CliContext
from app.config import Settings
from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig
from app.executor.plugins import load_builtin_plugins
from app.model.events import Event
from app.rules.stage import RulesStage, StageConfig
from app.runtime.agent import AgentRegistry
from app.runtime.worker import Guarantee, WorkerOptions
from tests.conftest import wait_until
from tests.integration.executor.executor_helpers import count_records, read_records
from tests.integration.runtime.kafka_helpers import json_values, produce_events, read_topic, unconsumed, worker_thread

KEY = b"e2e-signing-key-0123456789abcdef"
RULES = """\
    rules:
      - name: restart-on-ping            # A: "ping" -> fire "pong"
        match: {name: ping}
        actions:
          - fire_event: {subject: "{{ event.subject }}", name: pong, kind: archive, text: "from A"}
      - name: ping-back-on-pong          # B: "pong" -> fire "ping" (the accidental cycle)
        match: {name: pong}
        actions:
          - fire_event: {subject: "{{ event.subject }}", name: ping, kind: archive, text: "from B"}
"""


def test_rule_cycle__settles_after_one_round_with_the_rest_held_back(isolated_settings: Settings,
                                                                     tmp_path: Path) -> None:
    s = isolated_settings
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cycle.yaml").write_text(textwrap.dedent(RULES))
    load_builtin_plugins()
    stage = RulesStage(StageConfig(rules_dir=rules, signing_key=KEY, settings=s), registry=AgentRegistry())
    executor = build_executor_agent(ExecutorConfig(), signing_key=KEY)
    worker_id, executor_id = f"cycle-w-{uuid.uuid4().hex[:6]}", f"cycle-x-{uuid.uuid4().hex[:6]}"
    root = Event(subject="web1", name="ping", kind="ARCHIVE", text="the first ping")
    try:
        with worker_thread(s.model_copy(update={"state_dir": tmp_path / "worker"}), stage.agents,
                           WorkerOptions(app_id=worker_id, instance_id="w1", commit_interval_ms=100)), \
             worker_thread(s.model_copy(update={"state_dir": tmp_path / "executor"}), [executor],
                           WorkerOptions(app_id=executor_id, instance_id="x1", guarantee=Guarantee.EXACTLY_ONCE)):
            produce_events(s, s.topic("events"), [root])
            [held] = json_values(read_topic(s, s.topic("actions-suppressed"), expect=1, timeout_s=120))

            def settled() -> bool:  # every record on every topic of the loop consumed and committed
                return (unconsumed(s, worker_id, s.topic("events")) == 0
                        and unconsumed(s, worker_id, s.topic("rules-repartition")) == 0
                        and unconsumed(s, executor_id, s.topic("actions")) == 0)

            wait_until(settled, timeout_s=120, message="the worker and the executor caught up")
            actions = read_records(s, "actions", expect=2)
            results = read_records(s, "action-results", expect=2)
            events = sorted(read_records(s, "events", expect=3), key=lambda e: e["time"])
            assert settled() and count_records(s, "actions") == 2 and count_records(s, "actions-suppressed") == 1
            counters = stage.describe(0)["counters"]
    finally:
        stage.close()

    assert [(a["rule"], a["chain"]) for a in actions] == [("restart-on-ping", []), ("ping-back-on-pong",
                                                                                      ["restart-on-ping"])]
    assert {r["status"] for r in results} == {"SUCCEEDED"}
    assert [(e["name"], e["tags"].get("vigil.chain.rules")) for e in events] == [
        ("ping", None), ("pong", "restart-on-ping"), ("ping", "restart-on-ping,ping-back-on-pong")]
    assert {e["trace_id"] for e in events[1:]} == {root.id}, "the follow-on events continue the root's trace"
    assert held["action"]["rule"] == "restart-on-ping" and held["action"]["event_id"] == events[2]["id"]
    assert held["storm"]["reason"] == "cycle"
    assert counters["vigil_rules_storm_suppressed"]["total"] == 1
    assert counters["vigil_rules_actions"]["total"] == 2

    result = CliRunner().invoke(trace_command, [root.id], obj=CliContext(_settings=s))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"event {root.id} web1/ping")
    held_lines = [line for line in lines if "SUPPRESSED" in line]
    assert len(held_lines) == 1 and "by the storm guard (cycle: rule restart-on-ping is already in" in held_lines[0]
    assert sum("SUCCEEDED" in line and line.lstrip("│ ├└─").startswith("action") for line in lines) == 2
