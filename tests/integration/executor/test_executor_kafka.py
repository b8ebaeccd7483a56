"""`vigil executor` on real Kafka: http actions once per action id across repeated SIGKILLs,
shell arguments passed literally, email delivered to a real SMTP server, fire_event's trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from app.config import Settings
from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig
from app.executor.plugins import load_builtin_plugins
from app.runtime.worker import Guarantee, WorkerOptions
from tests.conftest import free_port, wait_until
from tests.integration.executor.executor_helpers import (
    action_record,
    count_records,
    produce_actions,
    read_records,
    spawn_executor,
)
from tests.integration.runtime.kafka_helpers import group_lag, stop_worker, worker_thread
from tests.unit.executor.http_server import idempotent_api
from tests.unit.executor.loopback import LOOPBACK_ONLY

SIGNING_KEY = b"integration-test-signing-key-0123"
N_ACTIONS = 500
N_TARGETS = 25
CONCURRENCY = 8
#: The server SIGKILLs the executor inside the request that executes the n-th distinct key:
#: the action has started (durably) and taken effect, but the executor never sees the answer.
KILL_AT_EXECUTIONS = (60, 180, 320)


def _non_duplicate(results: list[dict]) -> Counter[str]:
    return Counter(r["action_id"] for r in results if r["status"] != "DUPLICATE")


@pytest.mark.timeout(420)
def test_http__once_per_action_id_despite_repeated_sigkill(isolated_settings: Settings, tmp_path: Path) -> None:
    """What is asserted, precisely:
    - every action id was executed by the server exactly once (the server executes a key on its
      first request and answers repeats from its record, like real idempotent APIs) and every
      request carried its action's id as Idempotency-Key, so nothing ran under another key;
    - the request killed mid-flight was re-sent after the restart (http is idempotent: re-run with
      the same key, not reported) and, overall, re-sent requests are bounded by what a kill can
      interrupt (in flight, or finished but not yet committed);
    - each target's actions were executed in the order they were emitted;
    - action-results holds exactly one non-DUPLICATE result per action id, all SUCCEEDED
      (DUPLICATE results of redelivered, already-finished actions may appear);
    - nothing went to actions-dlq.
    """
    settings = isolated_settings
    app_id = f"exec-{uuid.uuid4().hex[:6]}"
    log_path = tmp_path / "executor.log"
    current: dict[str, subprocess.Popen] = {}
    killed_keys: list[str] = []

    def kill_mid_request(key: str, n: int) -> None:
        if n in KILL_AT_EXECUTIONS:
            killed_keys.append(key)
            os.killpg(current["proc"].pid, signal.SIGKILL)

    with idempotent_api(on_execute=kill_mid_request) as api:
        config = tmp_path / "executor.yaml"
        config.write_text(json.dumps({"concurrency": CONCURRENCY, "batch_size": 50, "timeout": "20s",
                                      "retries": {"max_attempts": 3, "backoff": "50ms"},
                                      "require_signature": True, "outbound": LOOPBACK_ONLY}))
        ids = [f"act-{i:04d}" for i in range(N_ACTIONS)]
        actions = [action_record(action_id, type="http", target=f"host-{i % N_TARGETS:02d}", key=SIGNING_KEY,
                                 params={"url": f"{api.url}/hook", "json": {"seq": i}})
                   for i, action_id in enumerate(ids)]
        produce_actions(settings, actions)

        def spawn() -> None:
            current["proc"] = spawn_executor(settings, config=config, app_id=app_id, instance_id="x1",
                                             state_dir=tmp_path / "state", log_path=log_path,
                                             env={"VIGIL_ACTION_SIGNING_KEY": SIGNING_KEY.decode()})

        spawn()
        restarts = 0
        try:
            while len(api.executed) < N_ACTIONS:
                proc = current["proc"]
                wait_until(lambda p=proc: p.poll() is not None or len(api.executed) >= N_ACTIONS,
                           timeout_s=120, message=f"progress or a kill (see {log_path})")
                if proc.poll() is not None:
                    assert proc.returncode == -signal.SIGKILL, f"executor died on its own, see {log_path}"
                    restarts += 1
                    spawn()
            wait_until(lambda: group_lag(settings, app_id, settings.topic("actions")) == 0, timeout_s=120,
                       message="every action's offset committed (results commit with them)")
        finally:
            stop_worker(current["proc"])
        assert restarts == len(KILL_AT_EXECUTIONS)

        results = read_records(settings, "action-results", expect=N_ACTIONS)
        assert set(api.executed) == set(ids) and set(api.executed.values()) == {1}
        per_key = api.requests_per_key()
        assert set(per_key) == set(ids), "every request carried its action id as Idempotency-Key"
        assert all(per_key[k] >= 2 for k in killed_keys), "a request killed mid-flight is re-sent (idempotent)"
        resent = sum(per_key.values()) - N_ACTIONS
        assert resent <= restarts * 2 * CONCURRENCY, f"{resent} re-sent requests for {restarts} kills"
        for t in range(N_TARGETS):
            order = [int(k[4:]) for k in api.execution_order if int(k[4:]) % N_TARGETS == t]
            assert order == sorted(order), f"host-{t:02d} executed out of order"
        assert _non_duplicate(results) == Counter(ids), "exactly one non-DUPLICATE result per action id"
        assert {r["status"] for r in results if r["status"] != "DUPLICATE"} == {"SUCCEEDED"}
        assert all(r["started"] and r["finished"] and r["trace_id"] == f"trace-{r['action_id']}"
                   for r in results if r["status"] == "SUCCEEDED")
    assert count_records(settings, "actions-dlq") == 0


class _Inbox:
    """aiosmtpd handler + authenticator recording what arrives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=(auth_data.login, auth_data.password) == (b"vigil", b"smtp-pw"))
        return AuthResult(success=False)


@pytest.fixture
def smtp_inbox():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=inbox.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _run_executor(settings: Settings, tmp_path: Path, config: ExecutorConfig, actions: list[dict]) -> list[dict]:
    """Run the executor agent in a worker thread until every action has its result."""
    load_builtin_plugins()
    agent = build_executor_agent(config)
    options = WorkerOptions(app_id=f"exec-{uuid.uuid4().hex[:6]}", instance_id="t1",
                            guarantee=Guarantee.EXACTLY_ONCE)
    produce_actions(settings, actions)
    with worker_thread(settings.model_copy(update={"state_dir": tmp_path / "state"}), [agent], options):
        return read_records(settings, "action-results", expect=len(actions))


def test_shell__argument_with_metacharacters_runs_literally(isolated_settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "must-not-exist"
    value = f"; rm -rf / ; touch {marker}"
    config = ExecutorConfig(commands={"echo-arg": ["printf", "%s", "{arg}"]})
    results = _run_executor(isolated_settings, tmp_path, config, [
        action_record("sh-1", type="shell", target="web1", params={"command": "echo-arg", "args": {"arg": value}}),
        action_record("fe-1", type="fire_event", target="web1", params={"name": "remediated", "text": "done"}),
    ])
    by_id = {r["action_id"]: r for r in results}
    assert by_id["sh-1"]["status"] == "SUCCEEDED"
    assert by_id["sh-1"]["output"] == value, "printf got the whole value as one argument"
    assert not marker.exists()
    assert by_id["fe-1"]["status"] == "SUCCEEDED"
    [event] = read_records(isolated_settings, "events", expect=1)
    assert (event["subject"], event["name"], event["trace_id"]) == ("web1", "remediated", "trace-fe-1")
    assert event["tags"]["action_id"] == "fe-1"


def test_email__arrives_at_a_real_smtp_server(isolated_settings: Settings, tmp_path: Path, smtp_inbox,
                                              monkeypatch) -> None:
    inbox, port = smtp_inbox
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-pw")
    config = ExecutorConfig.model_validate({"smtp": {
        "host": "127.0.0.1", "port": port, "from": "vigil@example.com", "username": "vigil",
        "password": "${env:TEST_SMTP_PASSWORD}"}, "outbound": LOOPBACK_ONLY})
    results = _run_executor(isolated_settings, tmp_path, config, [action_record(
        "mail-1", type="email", target="web1",
        params={"to": ["ops@example.com"], "subject": "web1 disk full", "body": "/var at 99%"})])
    assert [(r["action_id"], r["status"]) for r in results] == [("mail-1", "SUCCEEDED")]
    assert inbox.logins == [(b"vigil", b"smtp-pw")]
    [(rcpt, content)] = inbox.messages
    assert rcpt == ["ops@example.com"]
    text = content.decode()
    assert "Subject: web1 disk full" in text and "/var at 99%" in text
    assert "Message-ID: <mail-1@vigil>" in text and "From: vigil@example.com" in text
