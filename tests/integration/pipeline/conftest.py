"""The built-in pipeline on the session's real Kafka: topic readers that decode Avro, and `vigil
worker` processes running the built-in pipeline with their HTTP query API on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from tests.conftest import REPO, free_port, wait_until
from tests.integration.runtime.kafka_helpers import TEST_SESSION_TIMEOUT_MS


class TopicReader:
    """Every record of a topic from the beginning, decoded (Avro; or (key, value, headers) as text
    and bytes for the dead-letter topic), accumulated across polls."""

    def __init__(self, settings: Settings, logical_topic: str, *, avro: bool = True) -> None:
        self.topic = settings.topic(logical_topic)
        self.avro = avro
        self.registry = RegistryClient.from_settings(settings)
        self.serde = AvroSerde(self.registry)
        self.consumer = make_consumer(settings, f"test-read-{uuid.uuid4().hex[:8]}",
                                      **{"isolation.level": "read_committed"})
        md = self.consumer.list_topics(self.topic, timeout=10)
        self.partitions = [TopicPartition(self.topic, p) for p in md.topics[self.topic].partitions]
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in md.topics[self.topic].partitions])
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        """Read what arrived since the last poll; returns everything read so far."""
        while True:
            msgs = [m for m in self.consumer.consume(1000, timeout=0.2) if m.error() is None]
            if not msgs:
                return self.records
            for m in msgs:
                if self.avro:
                    self.records.append(self.serde.decode(m.value()))
                else:
                    headers = {k: v.decode() for k, v in m.headers() or []}
                    key = m.key().decode() if m.key() is not None else None
                    self.records.append((key, m.value(), headers))

    def wait_for(self, predicate: Callable[[list[Any]], Any], *, timeout_s: float = 60.0, message: str) -> Any:
        return wait_until(lambda: predicate(self.poll()), timeout_s=timeout_s, message=message)

    def read_to_end(self, *, timeout_s: float = 60.0) -> list[Any]:
        """Everything up to the end offsets the broker reports now (to assert there are no extras
        once what produces them is known to be done: a worker with no lag has committed its outputs)."""
        ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.partitions}

        def at_end() -> bool:
            self.poll()
            # read_committed: the position moves past transaction markers too, up to the high watermark
            return all(tp.offset >= ends[tp.partition] for tp in self.consumer.position(self.partitions)
                       if ends[tp.partition] > 0)

        wait_until(at_end, timeout_s=timeout_s, message=f"reading {self.topic} to its end offsets {ends}")
        return self.records

    def close(self) -> None:
        self.consumer.close()
        self.registry.close()


@pytest.fixture
def topic_reader() -> Iterator[Callable[..., TopicReader]]:
    readers: list[TopicReader] = []

    def make(settings: Settings, logical_topic: str, *, avro: bool = True) -> TopicReader:
        readers.append(TopicReader(settings, logical_topic, avro=avro))
        return readers[-1]

    yield make
    for r in readers:
        r.close()


class PipelineWorker:
    """`vigil worker` running the built-in pipeline (as deployed) in a subprocess."""

    def __init__(self, settings: Settings, *, app_id: str, instance_id: str, state_dir: Path, guarantee: str,
                 log_path: Path) -> None:
        self.settings, self.app_id, self.instance_id = settings, app_id, instance_id
        self.state_dir, self.guarantee, self.log_path = state_dir, guarantee, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PipelineWorker:
        cmd = [sys.executable, "-m", "app", "--bootstrap", self.settings.kafka_bootstrap, "--registry",
               self.settings.schema_registry_url, "worker", "--stage", "pipeline",
               "--app-id", self.app_id, "--instance-id", self.instance_id, "--guarantee", self.guarantee,
               "--http", f"127.0.0.1:{self.port}", "--session-timeout-ms", str(TEST_SESSION_TIMEOUT_MS),
               "--log-level", "INFO"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_STATE_DIR": str(self.state_dir),
               "VIGIL_TOPIC_PREFIX": self.settings.topic_prefix}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no commit, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def pipeline_workers(tmp_path: Path) -> Iterator[Callable[..., PipelineWorker]]:
    """Factory for PipelineWorker (not started); all are stopped at the end, logs shown on failure."""
    workers: list[PipelineWorker] = []

    def make(settings: Settings, *, app_id: str, instance_id: str, guarantee: str = "exactly_once") -> PipelineWorker:
        workers.append(PipelineWorker(settings, app_id=app_id, instance_id=instance_id,
                                      state_dir=tmp_path / f"state-{instance_id}", guarantee=guarantee,
                                      log_path=tmp_path / f"worker-{instance_id}.log"))
        return workers[-1]

    yield make
    for w in workers:
        w.stop()
    for w in workers:
        if w.log_path.exists():
            print(f"--- {w.instance_id} log (tail) ---\n{w.log_path.read_text(errors='replace')[-3000:]}")
