"""The test harness on a real broker: same interface as AgentHarness, but records go through
Kafka and a real Worker (in a thread) processes them, with changelogs, commits and restore.

    @pytest.mark.parametrize("make_harness", [memory_harness, kafka_harness])
    def test_counts(make_harness): ...

Topics are isolated under a fresh prefix; every source topic and the listed output topics are
created. `feed` returns once the worker has processed the record (synchronous, like in memory).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from app.bus.clients import make_admin, make_consumer, make_producer
from app.config import Settings
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient
from app.runtime.agent import Agent
from app.runtime.context import Output
from app.runtime.engine import DeadLetter
from app.runtime.tables import Table
from app.runtime.testing import find_table, identity_key
from app.runtime.worker import Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec

__all__ = ["KafkaHarness"]


class KafkaHarness:
    """AgentHarness's interface on a real broker."""

    def __init__(self, agents: list[Agent], *, settings: Settings, partitions: int = 1,
                 output_topics: tuple[str, ...] = (), wall_clock_ms: int = 0, timeout_s: float = 60.0) -> None:
        self.agents = agents
        self.partitions = partitions
        self.wall_clock_ms = wall_clock_ms
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="vigil-harness-")
        self.settings = settings.model_copy(update={"topic_prefix": f"h{uuid.uuid4().hex[:8]}-",
                                                    "state_dir": Path(self._tmp.name)})
        dlqs = {a.dlq_topic for a in agents}
        topics = {a.topic for a in agents} | set(output_topics) | dlqs
        reconcile(make_admin(self.settings), [TopicSpec(name=self.settings.topic(t), partitions=partitions,
                                                        replication=1) for t in sorted(topics)], dry_run=False)
        self.registry = RegistryClient.from_settings(self.settings)
        self.serde = AvroSerde(self.registry)
        self.producer = make_producer(self.settings)
        self._app_id = f"harness-{uuid.uuid4().hex[:6]}"
        self._fed = 0
        self._start()

    def _start(self) -> None:
        self._fed = 0  # counts per worker: a new worker's stats start at zero (all earlier input was committed)
        options = WorkerOptions(app_id=self._app_id, instance_id="harness", commit_interval_ms=100,
                                clock=lambda: self.wall_clock_ms)
        self.worker = Worker(self.settings, self.agents, options, registry=RegistryClient.from_settings(self.settings))
        self._thread = threading.Thread(target=self.worker.run, daemon=True)
        self._thread.start()
        self._wait(lambda: len(self.worker.engine.assigned()) == len({a.topic for a in self.agents}) * self.partitions,
                   "partition assignment")

    def _wait(self, predicate: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"harness: timed out waiting for {what}")
            if not self._thread.is_alive():
                raise RuntimeError("harness: the worker thread died (see its log)")
            time.sleep(0.01)

    def _processed(self) -> int:
        # Every agent sees every record of its topic; count the records of the first agent per topic.
        firsts = {a.topic: a for a in reversed(self.agents)}
        return sum(self.worker.engine.stats[a.name].events_in for a in firsts.values())

    def _settle(self) -> None:
        """Wait until everything fed was processed and committed (outputs are in Kafka)."""
        self._wait(lambda: self._processed() >= self._fed, "the worker to process what was fed")
        commits = self.worker.commit_count
        self._wait(lambda: self.worker.commit_count >= commits + 2, "a commit")

    # -- input ---------------------------------------------------------------------------------------
    def feed(self, topic: str, value: Any, *, key: str | None = None, partition: int | None = None,
             timestamp_ms: int | None = None, type_name: str | None = "vigil.Event") -> None:
        self.feed_many(topic, [value], key=key, partition=partition, timestamp_ms=timestamp_ms, type_name=type_name)

    def feed_many(self, topic: str, values: list[Any], *, key: str | None = None, partition: int | None = None,
                  timestamp_ms: int | None = None, type_name: str | None = "vigil.Event") -> None:
        for value in values:
            k = identity_key(value, key)
            if isinstance(value, bytes):
                raw = value
            elif type_name is None:
                raw = orjson.dumps(value)
            else:
                raw = self.serde.encode(self._complete(value, type_name), builtin_schema(type_name))
            kwargs: dict[str, Any] = {"key": k.encode() if k is not None else None,
                                      "timestamp": timestamp_ms if timestamp_ms is not None else self.wall_clock_ms}
            if partition is not None:
                kwargs["partition"] = partition
            self.producer.produce(self.settings.topic(topic), raw, **kwargs)
            self._fed += 1
        assert self.producer.flush(30) == 0
        self._settle()

    @staticmethod
    def _complete(value: dict[str, Any], type_name: str) -> dict[str, Any]:
        """Fill schema defaults so test dicts can be partial, like in the in-memory harness."""
        schema = builtin_schema(type_name).parsed
        out = dict(value)
        for f in schema["fields"]:
            if f["name"] not in out and "default" in f:
                out[f["name"]] = f["default"]
        out.setdefault("id", uuid.uuid4().hex)
        return out

    def advance_wall_clock(self, ms: int) -> int:
        """Move the worker's wall clock; returns how many timers fired."""
        before = sum(s.timers_fired for s in self.worker.engine.stats.values())
        self.wall_clock_ms += ms
        commits = self.worker.commit_count
        self._wait(lambda: self.worker.commit_count >= commits + 2, "the timers to fire and commit")
        return sum(s.timers_fired for s in self.worker.engine.stats.values()) - before

    # -- inspection ----------------------------------------------------------------------------------
    def _read(self, topic: str) -> list[Any]:
        consumer = make_consumer(self.settings, f"harness-read-{uuid.uuid4().hex[:6]}")
        real = self.settings.topic(topic)
        try:
            md = consumer.list_topics(real, timeout=10)
            if real not in md.topics or md.topics[real].error is not None:
                return []
            tps = [TopicPartition(real, p) for p in md.topics[real].partitions]
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            consumer.assign([TopicPartition(real, p, 0) for p in ends if ends[p] > 0])
            out: list[Any] = []
            pending = {p for p, hi in ends.items() if hi > 0}
            deadline = time.monotonic() + self.timeout_s
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=0.2):
                    if msg.error() is None:
                        out.append(msg)
                        if msg.offset() + 1 >= ends[msg.partition()]:
                            pending.discard(msg.partition())
            return sorted(out, key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
        finally:
            consumer.close()

    def _decode(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        try:
            return self.serde.decode(raw)
        except DecodeError:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                return raw.decode(errors="replace")

    def outputs(self, topic: str | None = None) -> list[Output]:
        if topic is None:
            raise ValueError("KafkaHarness.outputs needs a topic name")
        return [Output(topic, m.key().decode() if m.key() is not None else None, self._decode(m.value()))
                for m in self._read(topic)]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        out = []
        for topic in sorted({a.dlq_topic for a in self.agents}):
            for m in self._read(topic):
                h = {k: v.decode() for k, v in (m.headers() or [])}
                out.append(DeadLetter(h.get("vigil.topic", ""), int(h.get("vigil.partition", -1)),
                                      int(h.get("vigil.offset", -1)), m.key(), m.value(), h.get("vigil.agent", ""),
                                      h.get("vigil.error", ""), topic))
        return out

    def table(self, name: str) -> Table:
        return find_table(self.agents, name)

    def restart(self) -> None:
        """Stop the worker (commit, close) and start a new one on the same state and topics."""
        self.worker.stop()
        self._thread.join(60)
        self._start()

    def close(self) -> None:
        self.worker.stop()
        self._thread.join(60)
        if self.producer is not None:  # no close() on a Producer: librdkafka's handle goes with it
            self.producer.flush(10)
            self.producer = None
        self.registry.close()
        self._tmp.cleanup()
