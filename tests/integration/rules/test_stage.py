"""The rules stage on real Kafka, in an in-process worker: the example rule's throttle window, an
absence firing when a heartbeat stops, silences end to end, and the `vigil actions` / `vigil trace`
readers over what the stage wrote."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.actions.cli import actions_command, silence_group, trace_command
from app.bus.clients import make_admin
from app.cli import CliContext
from app.config import Settings
from app.model.events import Event, now_ms
from app.model.serde import AvroSerde
from app.model.signing import verify_action
from app.registry.client import RegistryClient
from app.rules.loader import load_rules
from app.rules.offline import simulate
from app.rules.stage import RulesStage, StageConfig
from app.rules.topics import ACTIONS_TOPIC, REPARTITION_TOPIC, SUPPRESSED_TOPIC
from app.runtime.agent import AgentRegistry
from app.runtime.worker import Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec, load_topics_file
from tests.conftest import REPO, wait_until
from tests.integration.runtime.kafka_helpers import produce_events, read_topic, worker_thread

KEY = b"integration-signing-key-0123456789"
S = 1000
#: Topics the stage needs that topics.yaml may not list yet (created here only when it does not).
STAGE_TOPICS = {REPARTITION_TOPIC: 6, SUPPRESSED_TOPIC: 1}


@pytest.fixture
def stage_settings(isolated_settings: Settings) -> Settings:
    declared = {spec.name for spec in load_topics_file(REPO / "topics.yaml").topics}
    missing = [TopicSpec(name=isolated_settings.topic(name), partitions=partitions, replication=1, config={})
               for name, partitions in STAGE_TOPICS.items() if name not in declared]
    admin = make_admin(isolated_settings)
    if missing:
        reconcile(admin, missing, dry_run=False)
    needed = [isolated_settings.topic(t) for t in ("events", "alerts", "actions", "action-results", "silences",
                                                   *STAGE_TOPICS)]

    def visible() -> bool:  # freshly created topics take a moment to appear in metadata with leaders
        topics = admin.list_topics(timeout=10).topics
        return all(t in topics and topics[t].error is None and topics[t].partitions
                   and all(p.leader >= 0 for p in topics[t].partitions.values()) for t in needed)

    wait_until(visible, timeout_s=30, message=f"topics {needed} in metadata")
    return isolated_settings


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    path = tmp_path / "rules"
    path.mkdir()
    return path


@contextmanager
def stage_worker(settings: Settings, rules_dir: Path) -> Iterator[tuple[RulesStage, Worker]]:
    """A worker running only the rules stage, with the rules in `rules_dir` (write them first)."""
    stage = RulesStage(StageConfig(rules_dir=rules_dir, signing_key=KEY, settings=settings), registry=AgentRegistry())
    options = WorkerOptions(app_id=f"rules-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200)
    try:
        with worker_thread(settings, stage.agents, options) as worker:
            wait_until(lambda: len(worker.engine.assigned()) == 3 * 6, timeout_s=60,
                       message="events, alerts and rules-repartition assigned")
            yield stage, worker
    finally:
        stage.close()


def decoded(settings: Settings, topic: str, expect: int) -> list[dict[str, Any]]:
    serde = AvroSerde(RegistryClient.from_settings(settings))
    return [serde.decode_typed(m.value())[1] for m in read_topic(settings, settings.topic(topic), expect=expect)]


def cli(settings: Settings, command: Any, args: list[str]) -> str:
    result = CliRunner().invoke(command, args, obj=CliContext(_settings=settings), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def example_rules(rules_dir: Path) -> Path:
    shutil.copy(REPO / "rules" / "load.yaml", rules_dir)
    return rules_dir


def test_example__fires_once_per_throttle_window_above_20_never_below(example_rules: Path,
                                                                       stage_settings: Settings) -> None:
    with stage_worker(stage_settings, example_rules) as (_stage, worker):
        start = 1_700_000_000_000  # explicit event times: throttle windows do not depend on the clock
        above = [Event(subject="client1", name="load", time=start + i * S, tags={"class": "client"},
                       metrics={"load1": v}) for i, v in enumerate([30.0, 20.0] * 90)]  # 3 minutes averaging 25
        below = [Event(subject="client2", name="load", time=start + i * S, tags={"class": "client"},
                       metrics={"load1": v}) for i, v in enumerate([5.0, 15.0] * 90)]  # averaging 10
        produce_events(stage_settings, stage_settings.topic("events"), above + below)
        wait_until(lambda: worker.engine.stats["rules_evaluate"].events_in >= 360, timeout_s=90,
                   message="all 360 load events evaluated")

        actions = decoded(stage_settings, ACTIONS_TOPIC, expect=6)
        assert sorted((a["target"], a["type"], a["time"] - start) for a in actions) == sorted(
            ("client1", t, ms) for ms in (0, 60 * S, 120 * S) for t in ("print", "fire_event"))
        offline = simulate(load_rules(example_rules)[0], [e.to_record() for e in above]).actions
        assert sorted(a["id"] for a in actions) == sorted(a.id for a in offline)  # deterministic ids
        assert all(verify_action(a, KEY) for a in actions)

        listed = [json.loads(line) for line in cli(stage_settings, actions_command, ["--json"]).splitlines()]
        assert sorted(r["id"] for r in listed) == sorted(a["id"] for a in actions)
        assert {r["status"] for r in listed} == {"PENDING"}  # no executor in this test
        tree = json.loads(cli(stage_settings, trace_command, [actions[0]["id"], "--json"]))
        assert tree["kind"] == "event" and tree["id"] == actions[0]["event_id"]
        assert tree["record"]["subject"] == "client1" and tree["children"][0]["kind"] == "firing"


def test_absent_for__fires_once_when_a_heartbeat_stops(rules_dir: Path, stage_settings: Settings) -> None:
    (rules_dir / "hb.yaml").write_text("""
rules:
  - name: hb-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 3s
    actions: [{print: {text: "{{ event.subject }} silent"}}]
""")
    with stage_worker(stage_settings, rules_dir) as (stage, _worker):
        now = now_ms()
        beats = [Event(subject="h1", name="heartbeat", time=now + i * 500) for i in range(3)]
        produce_events(stage_settings, stage_settings.topic("events"), beats)
        wait_until(lambda: (stage.state.lookup("hb-missing/absent_for/h1") or {}).get("fired"), timeout_s=60,
                   message="the absence timer fired")
        (action,) = decoded(stage_settings, ACTIONS_TOPIC, expect=1)
        assert (action["rule"], action["target"], action["event_id"]) == ("hb-missing", "h1", beats[-1].id)
        assert action["time"] == beats[-1].time + 3 * S


def test_silence__covered_action_suppressed_and_listed(rules_dir: Path, stage_settings: Settings) -> None:
    (rules_dir / "disk.yaml").write_text("rules: [{name: disk-full, match: {name: disk}, actions: [{print: {}}]}]\n")
    # Added before the worker starts: its first actions must already honour it.
    silence_id = cli(stage_settings, silence_group, ["add", "--match", "subject=web*", "--for", "1h",
                                                     "--reason", "patching"]).split()[0]
    assert silence_id in cli(stage_settings, silence_group, ["list"])
    with stage_worker(stage_settings, rules_dir) as (stage, _worker):
        produce_events(stage_settings, stage_settings.topic("events"),
                       [Event(subject="web1", name="disk", severity=2), Event(subject="db1", name="disk", severity=2)])
        (sent,) = decoded(stage_settings, ACTIONS_TOPIC, expect=1)
        assert sent["target"] == "db1"
        (listed,) = [json.loads(line) for line in
                     cli(stage_settings, actions_command, ["--suppressed", "--json"]).splitlines()]
        assert (listed["target"], listed["status"], listed["suppressed_by"]["id"]) == ("web1", "SUPPRESSED",
                                                                                      silence_id)

        cli(stage_settings, silence_group, ["remove", silence_id[:12]])
        wait_until(lambda: len(stage.silences) == 0, message="the removal reaches the stage")

        # Hot reload in the running worker: a new file is picked up, a broken one reported, the rest kept.
        (rules_dir / "mem.yaml").write_text("rules: [{name: mem-high, match: {name: mem}, actions: [{print: {}}]}]\n")
        (rules_dir / "disk.yaml").write_text("rules: [{name: disk-full, match: {name: disk}\n")
        wait_until(lambda: [r.name for r in stage.loader.ruleset] == ["disk-full", "mem-high"]
                   and stage.loader.errors, message="the new rule file loaded, the broken one reported")
        produce_events(stage_settings, stage_settings.topic("events"),
                       [Event(subject="web2", name="mem"), Event(subject="web2", name="disk")])
        assert sorted(a["rule"] for a in decoded(stage_settings, ACTIONS_TOPIC, expect=3)) == \
            ["disk-full", "disk-full", "mem-high"]
    assert cli(stage_settings, silence_group, ["list", "--all", "--json"]) == ""


def test_schedule__once_per_slot_across_a_worker_restart(rules_dir: Path, stage_settings: Settings) -> None:
    """A `schedule:` rule without `match:` on real Kafka: started by the first event any worker routes,
    it fires for consecutive slots, and a second worker (a restart on the same state and group) fires
    none of them again."""
    (rules_dir / "every.yaml").write_text("""
rules:
  - name: every-2s
    every: 2s
    actions: [{print: {slot: "{{ value }}"}}]
""")
    app_id = f"rules-{uuid.uuid4().hex[:6]}"

    def slots() -> list[int]:
        serde = AvroSerde(RegistryClient.from_settings(stage_settings))
        messages = read_topic(stage_settings, stage_settings.topic(ACTIONS_TOPIC), expect=0, timeout_s=5)
        return [int(json.loads(serde.decode_typed(m.value())[1]["params"])["slot"]) for m in messages]

    for instance in ("w1", "w2"):
        stage = RulesStage(StageConfig(rules_dir=rules_dir, signing_key=KEY, settings=stage_settings),
                           registry=AgentRegistry())
        options = WorkerOptions(app_id=app_id, instance_id=instance, commit_interval_ms=200)
        before = len(slots())
        try:
            with worker_thread(stage_settings, stage.agents, options):
                produce_events(stage_settings, stage_settings.topic("events"),
                               [Event(subject="any", name="noise", time=now_ms())])
                wait_until(lambda b=before: len(slots()) >= b + 2, timeout_s=90,
                           message=f"two more slots fired ({instance})")
        finally:
            stage.close()
    fired = slots()
    assert len(fired) == len(set(fired)), f"a slot fired twice: {fired}"
    assert fired == sorted(fired) and all(s % (2 * S) == 0 for s in fired)
