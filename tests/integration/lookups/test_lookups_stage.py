"""Lookups on real Kafka: a rule with a per-role threshold from the hierarchy fires for a db host
above its role's bound and not for a web host below its own; a lookup without default that finds
nothing sends the action to actions-dlq naming the key; `vigil lookup` shows which level answered."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from app.cli import CliContext
from app.config import Settings
from app.lookups.cli import lookup_command
from app.model.events import Event
from app.rules.topics import ACTIONS_DLQ_TOPIC, ACTIONS_TOPIC
from tests.conftest import wait_until
from tests.integration.rules.test_stage import decoded, rules_dir, stage_settings, stage_worker
from tests.integration.runtime.kafka_helpers import json_values, produce_events, read_topic

__all__ = ["rules_dir", "stage_settings"]  # fixtures used here

S = 1000
FILES = {
    "hierarchy.yaml": """\
        levels:
          - host/{{ subject }}
          - role/{{ tags.role }}
          - common
        """,
    "data/common.yaml": "thresholds: {load: 20}\n",
    "data/role/db.yaml": "thresholds: {load: 4}\n",
    "data/role/web.yaml": "thresholds: {load: 10}\n",
    "load.yaml": """\
        rules:
          - name: load-above-role-bound
            match:
              name: load
              metrics.load: {gt: "{{ lookup('thresholds.load') }}"}
            actions:
              - print: {text: "{{ event.subject }} load {{ event.metrics.load }} > {{ lookup('thresholds.load') }}"}
          - name: deploy-escalation
            match: {name: deploy}
            actions:
              - print: {team: "{{ lookup('escalation.team') }}"}
        """,
}


def test_per_role_threshold__fires_above_its_bound_only__missing_key_to_actions_dlq(
        rules_dir: Path, stage_settings: Settings) -> None:
    for name, text in FILES.items():
        path = rules_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    with stage_worker(stage_settings, rules_dir) as (_stage, worker):
        start = 1_700_000_000_000
        events = [
            Event(subject="db1", name="load", time=start, tags={"role": "db"}, metrics={"load": 6.0}),  # 6 > 4
            Event(subject="web1", name="load", time=start + S, tags={"role": "web"}, metrics={"load": 8.0}),  # 8 < 10
            Event(subject="db1", name="deploy", time=start + 2 * S, tags={"role": "db"}),
        ]
        produce_events(stage_settings, stage_settings.topic("events"), events)
        # web1's load is below its bound: its match fails already where events are routed
        wait_until(lambda: worker.engine.stats["rules_route_events"].events_in >= 3
                   and worker.engine.stats["rules_evaluate"].events_in >= 2, timeout_s=90,
                   message="the 3 events routed, the 2 that match evaluated")

        actions = decoded(stage_settings, ACTIONS_TOPIC, expect=1)
        assert [(a["rule"], a["target"], a["params"]) for a in actions] == [
            ("load-above-role-bound", "db1", '{"text":"db1 load 6.0 > 4"}')]
        (dead,) = json_values(read_topic(stage_settings, stage_settings.topic(ACTIONS_DLQ_TOPIC), expect=1))
        assert dead["rule"] == "deploy-escalation"
        assert "`escalation.team`" in dead["reason"] and "host/db1, role/db, common" in dead["reason"]
        assert dead["event_id"] == events[2].id

    result = CliRunner().invoke(lookup_command, ["thresholds.load", "--subject", "web1", "--tag", "role=web"],
                                obj=CliContext(_settings=stage_settings.model_copy(update={"rules_dir": rules_dir})))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [
        "thresholds.load = 10", "  answered by:", f"    role/web  ({rules_dir / 'data/role/web.yaml'}:1)"]
