"""End to end: someone edits a managed file → the file beacon reports it → a rule fires → the
executor restores the file from its source of truth (an allowlisted command, no shell) → the
beacon sees the file back as managed, and the rule stays quiet."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from pathlib import Path

from app.beacons.assembly import build_beacons, open_publisher
from app.beacons.config import load_beacons_config
from app.beacons.runner import Runner
from app.config import Settings
from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig
from app.executor.plugins import load_builtin_plugins
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.rules.stage import RulesStage, StageConfig
from app.runtime.agent import AgentRegistry
from app.runtime.worker import WorkerOptions
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import read_topic, worker_thread

KEY = b"e2e-signing-key-0123456789abcdef"


def test_edited_managed_file__is_detected_and_restored_from_source_of_truth(isolated_settings: Settings,
                                                                            tmp_path: Path) -> None:
    s = isolated_settings
    truth = tmp_path / "truth" / "motd"
    managed = tmp_path / "etc" / "motd"
    for path in (truth, managed):
        path.parent.mkdir(parents=True)
        path.write_text("Authorised use only.\n")
    truth_sha = hashlib.sha256(truth.read_bytes()).hexdigest()

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "managed.yaml").write_text(textwrap.dedent(f"""\
        rules:
          - name: restore-managed-motd
            description: put the managed motd back when its content drifts from the source of truth
            match:
              name: "file:{managed}"
              tags.change: content
              tags.sha256: {{ne: "{truth_sha}"}}
            actions:
              - shell: {{command: restore-motd, args: {{path: "{{{{ event.tags.path }}}}"}}}}
    """))
    executor_config = ExecutorConfig(commands={"restore-motd": ["cp", str(truth), "{path}"]})

    beacons_yaml = tmp_path / "beacons.yaml"
    subject = f"host-{uuid.uuid4().hex[:6]}"
    beacons_yaml.write_text(textwrap.dedent(f"""\
        subject: {subject}
        spool: {{dir: {tmp_path / "spool"}}}
        beacons:
          load: false
          cpu: false
          memory: false
          disk: false
          net: false
          heartbeat: false
          file: {{paths: ["{managed}"]}}
    """))
    config = load_beacons_config(beacons_yaml)
    publisher = open_publisher(config, s)
    runner = Runner(build_beacons(config), publisher, subject=config.subject, tags=config.tags)

    load_builtin_plugins()
    stage = RulesStage(StageConfig(rules_dir=rules, signing_key=KEY, settings=s), registry=AgentRegistry())
    executor = build_executor_agent(executor_config, signing_key=KEY)
    options = WorkerOptions(app_id=f"e2e-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=100)
    try:
        with worker_thread(s.model_copy(update={"state_dir": tmp_path / "state"}), [*stage.agents, executor],
                           options) as worker:
            wait_until(lambda: len(worker.engine.assigned()) >= 4 * 6, timeout_s=60, message="assignment")
            runner.run_once()                                   # baseline: managed, nothing fires
            managed.write_text("Hacked by someone.\n")          # the drift
            runner.run_once()
            wait_until(lambda: managed.read_text() == truth.read_text(), timeout_s=60,
                       message="the executor restored the managed file")
            runner.run_once()                                   # sees the restore: content == truth
            registry = RegistryClient.from_settings(s)
            serde = AvroSerde(registry)
            results = [serde.decode(m.value()) for m in read_topic(s, s.topic("action-results"), expect=1)]
            actions = [serde.decode(m.value()) for m in read_topic(s, s.topic("actions"), expect=1)]
            registry.close()
    finally:
        stage.close()  # its silences reader: a consumer in a thread of its own
        runner.close()
        publisher.close(timeout_s=10)
    assert [(a["rule"], a["type"], a["target"]) for a in actions] == [("restore-managed-motd", "shell", subject)]
    assert [(r["action_id"], r["status"]) for r in results] == [(actions[0]["id"], "SUCCEEDED")]
    assert managed.read_text() == "Authorised use only.\n"
