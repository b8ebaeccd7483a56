"""Runbook runs and rolls in `vigil executor` on real Kafka, SIGKILLed several times mid-step:
every step and every member runs exactly once, each has one result, and the runs finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.bus.clients import make_producer
from app.config import Settings
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.orchestration.machine import step_action_id
from app.orchestration.tailer import read_compacted
from app.registry.client import RegistryClient
from tests.conftest import wait_until
from tests.integration.executor.executor_helpers import (
    action_record,
    count_records,
    produce_actions,
    read_records,
    spawn_executor,
)
from tests.integration.runtime.kafka_helpers import stop_worker
from tests.unit.executor.http_server import idempotent_api
from tests.unit.executor.loopback import LOOPBACK_ONLY

SIGNING_KEY = b"integration-test-signing-key-0123"
RUNBOOK_STEPS = [f"step-{i}" for i in range(1, 7)]
N_MEMBERS = 20
#: The server SIGKILLs the executor inside the request of the n-th distinct step it executes:
#: the step has started (durably) and taken effect, but the executor never sees its answer.
#: 1-6 are the runbook's steps, 7-26 the roll's members (the roll starts once the runbook ended).
KILL_IN_RUNBOOK = (2, 5)
KILL_IN_ROLL = (8, 15, 23)


def _produce_members(settings: Settings, hosts: list[str]) -> None:
    """vigil.Member records on the compacted `members` topic, as the workers' members stage keeps them."""
    writer = AvroSerde(RegistryClient.from_settings(settings)).writer(builtin_schema("vigil.Member"))
    producer = make_producer(settings)
    for host in hosts:
        record = {"host": host, "state": "ALIVE", "tags": {"role": "cassandra"}, "first_seen": 1, "last_seen": 2,
                  "ttl": 60.0}
        producer.produce(settings.topic("members"), writer.encode(record), host.encode())
    assert producer.flush(60) == 0


def _run_states(settings: Settings) -> dict[str, dict[str, Any]]:
    return read_compacted(settings, "run-states", decode=lambda _k, raw: json.loads(raw), timeout_s=30)


def _finished(settings: Settings, run_id: str) -> bool:
    run = _run_states(settings).get(run_id)
    return run is not None and run["state"] in ("succeeded", "failed", "cancelled")


@pytest.mark.timeout(600)
def test_runbook_and_roll__each_step_and_member_once_despite_repeated_sigkill(isolated_settings: Settings,
                                                                             tmp_path: Path) -> None:
    settings = isolated_settings
    app_id = f"orch-{uuid.uuid4().hex[:6]}"
    log_path = tmp_path / "executor.log"
    current: dict[str, subprocess.Popen] = {}
    kills: list[int] = []

    def kill_mid_request(key: str, n: int) -> None:
        if n in KILL_IN_RUNBOOK + KILL_IN_ROLL:
            kills.append(n)
            os.killpg(current["proc"].pid, signal.SIGKILL)

    with idempotent_api(on_execute=kill_mid_request) as api:
        rules = tmp_path / "rules"
        rules.mkdir()
        steps = [{"name": name, "action": {"http": {"url": f"{api.url}/runbook", "json": {"step": name}}}}
                 for name in RUNBOOK_STEPS]
        (rules / "runbooks.yaml").write_text(json.dumps({"runbooks": [{"name": "checklist", "steps": steps}]}))
        config = tmp_path / "executor.yaml"
        config.write_text(json.dumps({
            "concurrency": 4, "timeout": "20s", "retries": {"max_attempts": 3, "backoff": "50ms"},
            "require_signature": True, "outbound": LOOPBACK_ONLY,
            "orchestration": {"slice": "2s", "rules_dir": str(rules), "workers": ["http://127.0.0.1:1"]}}))
        hosts = [f"db{i:02d}" for i in range(N_MEMBERS)]
        _produce_members(settings, hosts)

        def spawn() -> None:
            current["proc"] = spawn_executor(settings, config=config, app_id=app_id, instance_id="x1",
                                             state_dir=tmp_path / "state", log_path=log_path,
                                             env={"VIGIL_ACTION_SIGNING_KEY": SIGNING_KEY.decode()})

        def drive_until(done: Any, what: str) -> None:
            """Wait for `done`, restarting the executor after each kill."""
            while True:
                proc = current["proc"]
                wait_until(lambda p=proc: p.poll() is not None or done(), timeout_s=180,
                           message=f"{what} or a kill (see {log_path})")
                if proc.poll() is None:
                    return
                assert proc.returncode == -signal.SIGKILL, f"executor died on its own, see {log_path}"
                spawn()

        runbook_run, roll_run = "start-runbook", "start-roll"
        produce_actions(settings, [action_record(runbook_run, type="runbook", target="cassandra", key=SIGNING_KEY,
                                                 params={"name": "checklist"})])
        spawn()
        try:
            drive_until(lambda: _finished(settings, runbook_run), "the runbook run finished")
            produce_actions(settings, [action_record(
                roll_run, type="roll", target="cassandra", key=SIGNING_KEY,
                params={"members": {"tags": {"role": "cassandra"}}, "concurrency": 3,
                        "action": {"http": {"url": f"{api.url}/roll", "json": {"host": "{{ member.host }}"}}}})])
            drive_until(lambda: _finished(settings, roll_run), "the roll finished")
        finally:
            stop_worker(current["proc"])
        assert kills == [*KILL_IN_RUNBOOK, *KILL_IN_ROLL]

        runbook_ids = [step_action_id(runbook_run, 0, name, 1) for name in RUNBOOK_STEPS]
        roll_ids = [step_action_id(roll_run, lane, "http", 1) for lane in range(N_MEMBERS)]
        # Every step and every member executed exactly once (the server executes a key on its first
        # request and answers repeats from its record), the runbook's steps in order.
        assert Counter(api.executed) == Counter({k: 1 for k in runbook_ids + roll_ids})
        assert set(api.executed.values()) == {1}
        assert [k for k in api.execution_order if k in runbook_ids] == runbook_ids
        roll_bodies = [json.loads(s.body) for s in api.requests if s.path == "/roll"]
        assert {b["host"] for b in roll_bodies} == set(hosts), "the roll reached every member"

        states = _run_states(settings)
        assert states[runbook_run]["state"] == "succeeded", states[runbook_run]
        assert states[roll_run]["state"] == "succeeded", states[roll_run]
        assert states[roll_run]["counts"] == {"succeeded": N_MEMBERS}
        lanes = states[roll_run]["lanes"]
        assert sorted(lane["target"] for lane in lanes) == hosts
        assert all(lane["steps"]["http"]["status"] == "SUCCEEDED" for lane in lanes)
        assert [states[runbook_run]["lanes"][0]["steps"][s]["status"] for s in RUNBOOK_STEPS] == ["SUCCEEDED"] * 6

        step_ids = set(runbook_ids + roll_ids)
        wanted = len(step_ids) + 2  # and the two start actions
        results = read_records(settings, "action-results", expect=wanted, timeout_s=120)
        decided = Counter(r["action_id"] for r in results if r["status"] != "DUPLICATE")
        assert {k: decided[k] for k in step_ids} == {k: 1 for k in step_ids}, "one result per step and member"
        assert {r["status"] for r in results if r["action_id"] in step_ids and r["status"] != "DUPLICATE"} == {
            "SUCCEEDED"}
        assert decided[runbook_run] == 1 and decided[roll_run] == 1
    assert count_records(settings, "actions-dlq") == 0
