"""Routes on real Kafka, in an in-process worker: copies identical to their events (key, value,
timestamp, headers), deterministic sampling across a worker restart, hot reload of a route file, a
missing destination topic counted and not fatal, and exactly-once copies inside the worker's
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import generate_latest

from app.bus.clients import make_admin, make_consumer, make_producer
from app.config import Settings
from app.model.ids import new_id
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.routing.catalog import KafkaTopicCatalog
from app.routing.loader import load_routes
from app.routing.router import sampled_in
from app.routing.stage import MISSING_TOPIC, RoutesConfig, RoutesStage
from app.runtime.agent import AgentRegistry
from app.runtime.worker import Guarantee, Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import read_topic, worker_thread

ROUTES = """\
routes:
  - name: prod
    match: {tags.env: production}
    to: prod-copy
  - name: web-critical
    match: {subject: "web*", severity: {ge: 2}}
    to: critical-copy
  - name: prod-tenth
    match: {tags.env: production}
    to: dev-events
    sample: {percent: 10, by: identity}
"""
DESTINATIONS = ("prod-copy", "critical-copy", "dev-events")


def create_topics(settings: Settings, names: tuple[str, ...], partitions: int = 3) -> None:
    admin = make_admin(settings)
    reconcile(admin, [TopicSpec(name=settings.topic(n), partitions=partitions, replication=1, config={})
                      for n in names], dry_run=False)

    def visible() -> bool:
        topics = admin.list_topics(timeout=10).topics
        return all(settings.topic(n) in topics and all(p.leader >= 0 for p in topics[settings.topic(n)].partitions
                                                       .values()) for n in names)

    wait_until(visible, timeout_s=30, message=f"topics {names} in metadata")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules" / "routes").mkdir(parents=True)
    (tmp_path / "rules" / "routes" / "copy.yaml").write_text(ROUTES)
    return tmp_path / "rules"


def produce(settings: Settings, events: list[dict[str, Any]], *, base_ts: int = 1_700_000_000_000
            ) -> list[tuple[bytes, bytes, int, list[tuple[str, bytes]]]]:
    """Produce events with a header and an explicit timestamp each; returns what was produced."""
    writer = AvroSerde(RegistryClient.from_settings(settings)).writer(builtin_schema("vigil.Event"))
    producer = make_producer(settings)
    sent = []
    for i, e in enumerate(events):
        record = {"id": new_id(), "time": base_ts + i, "kind": "STATUS", "severity": 0, "origin": "test", "text": "",
                  "tags": {}, "metrics": {}, "ttl": None, "extended": None, "trace_id": None, **e}
        key = f"{record['subject']}/{record['name']}".encode()
        value = writer.encode(record)
        headers = [("test-header", f"h{i}".encode()), ("binary", bytes([0, i % 256]))]
        producer.produce(settings.topic("events"), value, key, timestamp=base_ts + 1000 + i, headers=headers)
        sent.append((key, value, base_ts + 1000 + i, headers))
    assert producer.flush(30) == 0
    return sent


@contextmanager
def routes_worker(settings: Settings, rules_dir: Path, *, app_id: str | None = None,
                  guarantee: Guarantee = Guarantee.AT_LEAST_ONCE) -> Iterator[tuple[RoutesStage, Worker]]:
    """A worker running only the routes stage over `rules_dir/routes` (topic names read every 0.5 s)."""
    stage = RoutesStage(RoutesConfig(rules_dir / "routes", reload_interval_s=0.2, settings=settings),
                        catalog=KafkaTopicCatalog(settings, refresh_s=0.5), registry=AgentRegistry())
    options = WorkerOptions(app_id=app_id or f"routes-{uuid.uuid4().hex[:6]}", instance_id="w1",
                            commit_interval_ms=200, guarantee=guarantee)
    try:
        with worker_thread(settings, stage.stage(), options) as worker:
            wait_until(lambda: len(worker.engine.assigned()) > 0, timeout_s=60, message="events assigned")
            yield stage, worker
    finally:
        stage.close()


def copies(settings: Settings, topic: str, expect: int) -> list[Any]:
    return read_topic(settings, settings.topic(topic), expect=expect, timeout_s=60)


def mix(n: int, *, start: int = 0) -> list[dict[str, Any]]:
    """n events: every other one production, every third one a critical web event."""
    return [{"subject": f"{'web' if i % 3 == 0 else 'db'}{i % 40}", "name": "check",
             "severity": 2 if i % 3 == 0 else 0, "tags": {"env": "production" if i % 2 == 0 else "staging"}}
            for i in range(start, start + n)]


def test_copies_are_identical_and_sampling_is_deterministic_across_a_restart(isolated_settings: Settings,
                                                                             rules_dir: Path) -> None:
    s = isolated_settings
    create_topics(s, DESTINATIONS)
    app_id = f"routes-{uuid.uuid4().hex[:6]}"
    tenth = next(r for r in load_routes(rules_dir) if r.name == "prod-tenth")
    with routes_worker(s, rules_dir, app_id=app_id) as (stage, _):
        sent = produce(s, mix(120))
        by_key_value = {(k, v): (ts, h) for k, v, ts, h in sent}
        prod = copies(s, "prod-copy", 60)
        critical = copies(s, "critical-copy", 40)
        assert len(prod) == 60 and len(critical) == 40
        for msg in [*prod, *critical]:
            ts, headers = by_key_value[(msg.key(), msg.value())]  # key and value bytes as produced
            assert msg.timestamp()[1] == ts
            assert msg.headers() == headers
        wait_until(lambda: stage.routed.labels("prod")._value.get() == 60, message="routed counted")
        first = sorted(m.key() for m in copies(s, "dev-events", 1))
    assert set(first) == {m.key() for m in prod if sampled_in(tenth, m.key(), {}, None)}
    # a new worker (the same group: resumes after what was processed), the same identities again
    with routes_worker(s, rules_dir, app_id=app_id):
        produce(s, mix(120), base_ts=1_700_000_100_000)
        assert len(copies(s, "prod-copy", 120)) == 120
        again = copies(s, "dev-events", 2 * len(first))
    assert sorted(m.key() for m in again) == sorted(first * 2)  # the same identities sampled in


def test_a_route_file_is_hot_reloaded(isolated_settings: Settings, rules_dir: Path) -> None:
    s = isolated_settings
    create_topics(s, (*DESTINATIONS, "late-copy"))
    with routes_worker(s, rules_dir) as (stage, _):
        produce(s, mix(10))
        copies(s, "prod-copy", 5)
        (rules_dir / "routes" / "late.yaml").write_text("routes:\n  - name: late\n    match: {subject: 'db*'}\n"
                                                        "    to: late-copy\n")
        # the route files are read again on batches: keep events coming until the new route copies them
        def late_copied() -> bool:
            produce(s, [{"subject": "db1", "name": "x"}])
            return len(read_topic(s, s.topic("late-copy"), expect=0, timeout_s=2)) > 0

        wait_until(late_copied, timeout_s=60, interval_s=0.5, message="copies of the new route")
        (rules_dir / "routes" / "late.yaml").write_text("routes:\n  - name: late\n    to: events\n")  # a loop: refused
        wait_until(lambda: (produce(s, [{"subject": "db2", "name": "x"}]), stage.file_errors._value.get() == 1)[1],
                   timeout_s=60, interval_s=0.5, message="the broken file reported")
        assert [r.name for r in stage.router.routes] == ["prod", "web-critical", "prod-tenth", "late"]


def test_a_missing_destination_is_counted_and_not_fatal(isolated_settings: Settings, rules_dir: Path) -> None:
    s = isolated_settings
    create_topics(s, ("critical-copy", "dev-events"))  # prod-copy does not exist
    with routes_worker(s, rules_dir) as (stage, worker):
        produce(s, mix(30))
        assert len(copies(s, "critical-copy", 10)) == 10  # the other routes go on
        wait_until(lambda: stage.errors.labels("prod", MISSING_TOPIC)._value.get() == 15, message="errors counted")
        assert worker.failure is None and worker.rewind_count == 0
        served = generate_latest(stage.metrics).decode()  # what the worker serves at /metrics beside its own
        assert 'vigil_route_errors_total{reason="missing topic",route="prod"} 15.0' in served
        create_topics(s, ("prod-copy",))
        wait_until(lambda: (produce(s, mix(2)), stage.routed.labels("prod")._value.get() > 0)[1], timeout_s=60,
                   interval_s=0.5, message="copies once the topic exists")
        assert worker.failure is None


def test_exactly_once_copies_are_in_the_workers_transaction(isolated_settings: Settings, rules_dir: Path) -> None:
    s = isolated_settings
    create_topics(s, DESTINATIONS, partitions=1)
    with routes_worker(s, rules_dir, guarantee=Guarantee.EXACTLY_ONCE) as (_, worker):
        produce(s, mix(40))
        committed = copies(s, "prod-copy", 20)
        assert len(committed) == 20
        wait_until(lambda: worker.commit_count > 0, message="a commit")
    consumer = make_consumer(s, f"hw-{uuid.uuid4().hex[:6]}")
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(s.topic("prod-copy"), 0), timeout=10)
    finally:
        consumer.close()
    # transaction markers take offsets: written transactionally, more offsets than records
    assert high > len(committed)


def test_a_forwarder_routes_beside_a_pipeline_worker_each_in_its_own_group(isolated_settings: Settings,
                                                                          rules_dir: Path) -> None:
    """The chart's forwarders: the routes in a worker of their own consumer group, beside a worker
    running the pipeline only. Each group reads every event once: neither takes the other's."""
    from app.pipeline.agents import Pipeline
    from app.pipeline.config import PipelineConfig

    s = isolated_settings
    create_topics(s, DESTINATIONS)
    pipeline = Pipeline(PipelineConfig.from_settings(s))
    options = WorkerOptions(app_id=f"pipeline-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200)
    with worker_thread(s, [pipeline.agent], options) as worker, \
            routes_worker(s, rules_dir, app_id=f"forwarder-{uuid.uuid4().hex[:6]}") as (stage, forwarder):
        produce(s, mix(90))
        assert len(copies(s, "prod-copy", 45)) == 45 and len(copies(s, "critical-copy", 30)) == 30
        processed = worker.engine.stats[pipeline.agent.name]
        wait_until(lambda: processed.events_in == 90, message="every event processed by the pipeline too")
        wait_until(lambda: stage.routed.labels("prod")._value.get() == 45, message="every copy counted")
        assert forwarder.engine.stats[stage.agent.name].events_in == 90
        assert worker.failure is None and forwarder.failure is None
