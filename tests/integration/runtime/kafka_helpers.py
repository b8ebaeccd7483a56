"""Helpers for runtime integration tests: produce Vigil events, read topics, run workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from app.bus.clients import make_consumer, make_producer
from app.config import Settings
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.runtime.agent import Agent
from app.runtime.stage import Stage
from app.runtime.worker import Worker, WorkerOptions
from tests.conftest import REPO

#: Session timeout of the workers tests start as processes: a worker a test stops for good is
#: replaced this soon (a static member does not leave its group on close); a restart is faster.
TEST_SESSION_TIMEOUT_MS = 10_000


def produce_events(settings: Settings, topic: str, events: list[Event]) -> None:
    """Produce vigil.Event records keyed by identity; waits for all acks."""
    serde = AvroSerde(RegistryClient.from_settings(settings))
    writer = serde.writer(builtin_schema("vigil.Event"))
    producer = make_producer(settings)
    for i, ev in enumerate(events):
        producer.produce(topic, writer.encode(ev.to_record()), ev.key.encode())
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def produce_raw(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = make_producer(settings)
    for key, value in items:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def read_topic(settings: Settings, topic: str, *, expect: int, timeout_s: float = 60.0,
               committed_only: bool = True) -> list[Any]:
    """Every record of a topic from the beginning, waiting until at least `expect` arrived and no
    more arrive for a moment. Returns confluent Messages."""
    consumer: Consumer = make_consumer(settings, f"test-read-{uuid.uuid4().hex[:8]}", **{
        "isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = [m for m in consumer.consume(1000, timeout=0.2) if m.error() is None]
            if msgs:
                out.extend(msgs)
                quiet_since = time.monotonic()
            elif len(out) >= expect and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        consumer.close()
    return out


def json_values(msgs: list[Any]) -> list[dict]:
    return [orjson.loads(m.value()) for m in msgs]


@contextmanager
def worker_thread(settings: Settings, agents: list[Agent] | Stage, options: WorkerOptions) -> Iterator[Worker]:
    """Run a Worker (of agents, or of a stage with its routes) in a background thread; stop and join
    it on exit."""
    if isinstance(agents, Stage):
        worker = Worker(settings, agents.agents, options, routes=agents.routes, collectors=agents.collectors)
    else:
        worker = Worker(settings, agents, options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
        if errors:
            raise errors[0]


def spawn_worker(settings: Settings, *, plugin: str | list[str], app_id: str, instance_id: str, state_dir: Path,
                 guarantee: str = "at_least_once", env: dict[str, str] | None = None,
                 log_path: Path | None = None, http: str = "", stages: list[str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start `vigil worker` in a subprocess with only the given plugin agents and built-in stages."""
    plugins = [plugin] if isinstance(plugin, str) else plugin
    chosen = ["--no-builtins"] if not stages else [arg for s in stages for arg in ("--stage", s)]
    cmd = [sys.executable, "-m", "app", "--bootstrap", settings.kafka_bootstrap,
           "--registry", settings.schema_registry_url, "worker", *chosen,
           *[arg for p in plugins for arg in ("--plugins", p)],
           "--app-id", app_id, "--instance-id", instance_id, "--guarantee", guarantee, "--http", http,
           "--session-timeout-ms", str(TEST_SESSION_TIMEOUT_MS), "--log-level", "INFO", *extra_args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_STATE_DIR": str(state_dir),
                "VIGIL_TOPIC_PREFIX": settings.topic_prefix, **(env or {})}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (owned by the child)
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_worker(proc: subprocess.Popen, *, kill: bool = False, timeout_s: float = 60) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    proc.wait(timeout_s)


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Records of `topic` not yet committed by consumer group `group`."""
    consumer = make_consumer(settings, group)
    try:
        md = consumer.list_topics(topic, timeout=10)
        tps = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        committed = consumer.committed(tps, timeout=10)
        lag = 0
        for tp in committed:
            _, hi = consumer.get_watermark_offsets(tp, timeout=10)
            lag += hi - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def unconsumed(settings: Settings, group: str, topic: str, *, timeout_s: float = 30.0) -> int:
    """Records of `topic` that consumer group `group` has not committed yet, counting only what a
    read_committed consumer reads: unlike `group_lag`, the markers that transactional producers
    (an exactly-once executor) leave in a topic are not lag."""
    probe = make_consumer(settings, group)
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        committed = probe.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        probe.close()
    reader = make_consumer(settings, f"unconsumed-{uuid.uuid4().hex[:8]}",
                           **{"isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        reader.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                       for tp in committed])
        at_end: set[int] = set()
        count = 0
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(committed):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
            for msg in reader.consume(1000, timeout=0.2):
                if msg.error() is None:
                    count += 1
                    at_end.discard(msg.partition())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
        return count
    finally:
        reader.close()
