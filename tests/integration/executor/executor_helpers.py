"""Helpers for executor integration tests: produce actions, read results, run `vigil executor`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from app.bus.clients import make_consumer, make_producer
from app.config import Settings
from app.model.events import Action
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.model.signing import sign_action
from app.registry.client import RegistryClient
from tests.conftest import REPO
from tests.integration.runtime.kafka_helpers import TEST_SESSION_TIMEOUT_MS, read_topic

# Runs the main CLI with the executor registered, whether or not app/cli.py lists it yet.
_CLI = ("from app.cli import LAZY_COMMANDS, main; "
        "LAZY_COMMANDS.setdefault('executor', 'app.executor.cli:executor_command'); main()")


def action_record(action_id: str, *, type: str, target: str, params: dict[str, Any], key: bytes | None = None,
                  **fields: Any) -> dict[str, Any]:
    """A vigil.Action record (signed when `key` is given)."""
    record = Action(id=action_id, rule="it", type=type, target=target, params=json.dumps(params),
                    event_id=f"ev-{action_id}", trace_id=f"trace-{action_id}", **fields).to_record()
    if key is not None:
        record["signature"] = sign_action(record, key)
    return record


def produce_actions(settings: Settings, actions: list[dict[str, Any]]) -> None:
    """Produce actions to `actions` keyed by target, as the rules stage does; waits for acks."""
    writer = AvroSerde(RegistryClient.from_settings(settings)).writer(builtin_schema("vigil.Action"))
    producer = make_producer(settings)
    for record in actions:
        producer.produce(settings.topic("actions"), writer.encode(record), record["target"].encode())
    assert producer.flush(60) == 0


def read_records(settings: Settings, logical_topic: str, *, expect: int, timeout_s: float = 90) -> list[dict]:
    """Decoded Avro records of a topic (committed only), waiting for at least `expect`."""
    serde = AvroSerde(RegistryClient.from_settings(settings))
    msgs = read_topic(settings, settings.topic(logical_topic), expect=expect, timeout_s=timeout_s)
    return [serde.decode_typed(m.value())[1] for m in msgs]


def count_records(settings: Settings, logical_topic: str) -> int:
    """How many records a topic holds (sum of partition high watermarks minus low ones)."""
    consumer = make_consumer(settings, f"count-{uuid.uuid4().hex[:8]}")
    try:
        topic = settings.topic(logical_topic)
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        consumer.close()


def spawn_executor(settings: Settings, *, config: Path, app_id: str, instance_id: str, state_dir: Path,
                   log_path: Path, env: dict[str, str] | None = None,
                   guarantee: str = "exactly_once") -> subprocess.Popen:
    """Start `vigil executor` in its own process group (so a test can SIGKILL all of it)."""
    cmd = [sys.executable, "-c", _CLI, "--bootstrap", settings.kafka_bootstrap, "--registry",
           settings.schema_registry_url, "executor", "-c", str(config), "--app-id", app_id,
           "--instance-id", instance_id, "--guarantee", guarantee, "--http", "",
           "--session-timeout-ms", str(TEST_SESSION_TIMEOUT_MS)]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_STATE_DIR": str(state_dir),
                "VIGIL_TOPIC_PREFIX": settings.topic_prefix, **(env or {})}
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
