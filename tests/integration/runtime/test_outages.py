"""The worker rides through outages of its dependencies on a private broker and registry that the
tests stop and start (tests/integration/outage.py): nothing valid is dead-lettered, every event
reaches its status (exactly once under exactly-once), and the statuses are those a run without the
outage gives (a reference fold of the same events)."""

from __future__ import annotations

import logging
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from app.bus.clients import make_consumer, make_producer
from app.config import Settings
from app.model.events import Event
from app.model.schemas import builtin_schema, parse_schema_text
from app.model.serde import AvroSerde, RecordWriter
from app.pipeline.agents import Pipeline, build_pipeline
from app.registry.client import RegistryClient
from app.runtime.worker import Guarantee, Worker, WorkerOptions
from tests.conftest import wait_until
from tests.integration.outage import OutageStack
from tests.integration.pipeline.reference import reference_records
from tests.integration.runtime.kafka_helpers import read_topic, worker_thread

IDENTITIES = 30
PARTITIONS = 6  # of `events` in topics.yaml
#: A type the worker has not seen when the registry goes away (registered before, by its producer).
REPAIR_SCHEMA = parse_schema_text("""
{"type": "record", "name": "DiskRepair", "namespace": "acme.outage",
 "fields": [{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},
            {"name": "time", "type": "long"}, {"name": "id", "type": "string"},
            {"name": "disk", "type": "string"}]}
""", where="test")

GUARANTEES = [pytest.param(Guarantee.AT_LEAST_ONCE, id="at-least-once"),
              pytest.param(Guarantee.EXACTLY_ONCE, id="exactly-once")]


class Feed:
    """Produces events (and repairs) in event-time order and remembers them for the reference."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = RegistryClient.from_settings(settings)
        serde = AvroSerde(self.registry)
        # Both writers registered now, while the registry is up: producers keep their ids cached.
        self.event_writer: RecordWriter = serde.writer(builtin_schema("vigil.Event"))
        self.repair_writer: RecordWriter = serde.writer(REPAIR_SCHEMA)
        self.producer = make_producer(settings)
        self.rng = random.Random(5)
        self.time_ms = int(time.time() * 1000) - 120_000
        self.sent: list[tuple[dict[str, Any], str]] = []

    def events(self, count: int) -> None:
        for _ in range(count):
            self.time_ms += 10
            ev = Event(subject=f"host{self.rng.randrange(IDENTITIES)}", name="svc", time=self.time_ms,
                       severity=self.rng.choice((0, 0, 1, 2)))
            self._send(ev.to_record(), "vigil.Event", self.event_writer)

    def repairs(self, count: int) -> None:
        for _ in range(count):
            self.time_ms += 10
            record = {"subject": f"host{self.rng.randrange(IDENTITIES)}", "name": "repair", "time": self.time_ms,
                      "id": uuid.uuid4().hex, "disk": "sdb"}
            self._send(record, "acme.outage.DiskRepair", self.repair_writer)

    def _send(self, record: dict[str, Any], type_name: str, writer: RecordWriter) -> None:
        self.producer.produce(self.settings.topic("events"), writer.encode(record),
                              f"{record['subject']}/{record['name']}".encode())
        self.producer.poll(0)
        self.sent.append((record, type_name))

    def flush(self) -> None:
        assert self.producer.flush(120) == 0

    def close(self) -> None:
        self.producer.flush(30)
        self.registry.close()


@pytest.fixture
def feed(outage: OutageStack, tmp_path: Path) -> Iterator[Feed]:
    f = Feed(outage.isolated(tmp_path / "state"))
    yield f
    f.close()


def statuses(pipeline: Pipeline, worker: Worker) -> dict[str, dict[str, Any]]:
    with worker.lock:
        found = pipeline.tracker.statuses()
    return {f"{s['subject']}/{s['name']}": s for s in found}


def wait_for_reference(pipeline: Pipeline, worker: Worker, feed: Feed, *, exact: bool) -> None:
    """Until every identity's status is the reference fold's (event counts exact, or at least)."""
    _, expected = reference_records(feed.sent)
    want = {k: (v.state, v.last_event_id) for k, v in expected.items()}

    def matches() -> bool:
        got = statuses(pipeline, worker)
        if {k: (v["state"], v["last_event_id"]) for k, v in got.items()} != want:
            return False
        counts_ok = (lambda g, e: g == e) if exact else (lambda g, e: g >= e)
        return all(counts_ok(got[k]["event_count"], v.event_count) for k, v in expected.items())

    wait_until(matches, timeout_s=180, message="every identity's status to be the reference fold's")
    if exact:
        got = statuses(pipeline, worker)
        assert {k: v["event_count"] for k, v in got.items()} == {k: v.event_count for k, v in expected.items()}


def problems(worker: Worker) -> str:
    return " | ".join(worker.health()[1]["problems"])


@contextmanager
def running_pipeline(feed: Feed, guarantee: Guarantee) -> Iterator[tuple[Pipeline, Worker]]:
    """A pipeline worker on the feed's settings that has processed a first 300 events."""
    pipeline = build_pipeline()
    options = WorkerOptions(app_id=f"outage-{uuid.uuid4().hex[:6]}", instance_id="w1", guarantee=guarantee,
                            commit_interval_ms=200, max_retry_backoff_s=1.0)
    with worker_thread(feed.settings, pipeline.stage(), options) as worker:
        wait_until(lambda: len(worker.engine.assigned()) == PARTITIONS, timeout_s=60, message="assignment")
        feed.events(300)
        feed.flush()
        wait_for_reference(pipeline, worker, feed, exact=guarantee == Guarantee.EXACTLY_ONCE)
        yield pipeline, worker


def rebuilds(worker: Worker) -> float:
    """How many times the worker made its consumer anew."""
    return worker.metrics.rewinds.labels("consumer made anew")._value.get()


def fence(worker: Worker, settings: Settings) -> None:
    """Join the worker's group as a plain consumer with the worker's group.instance.id: the broker
    fences the worker's static member. Polls until the worker has made its consumer anew (whose join
    fences this one in turn), then closes it."""
    before = rebuilds(worker)
    intruder: Consumer = make_consumer(settings, worker.app_id, **{
        "group.instance.id": f"{worker.app_id}-{worker.instance_id}", "log_level": 0,
        "partition.assignment.strategy": "cooperative-sticky"})
    try:
        intruder.subscribe([settings.topic("events")])

        def worker_rebuilt() -> bool:
            intruder.consume(100, timeout=0.2)  # joins (fencing the worker), then is fenced itself
            return rebuilds(worker) > before

        wait_until(worker_rebuilt, timeout_s=120, message="the fenced worker to make its consumer anew")
    finally:
        intruder.close()


def wait_rejoined(worker: Worker) -> None:
    wait_until(lambda: len(worker.engine.assigned()) == PARTITIONS and worker.health()[0], timeout_s=120,
               message="the worker to own every partition again")


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_fenced_consumer__the_worker_joins_again_with_a_new_one_and_loses_nothing(
        outage: OutageStack, feed: Feed, guarantee: Guarantee, caplog: pytest.LogCaptureFixture) -> None:
    """A consumer with the worker's group.instance.id fences the worker's static member (its consumer
    is dead for good: every call fails or returns nothing): the worker makes a new consumer, joins
    again, and processes what comes before, while and after it was fenced."""
    caplog.set_level(logging.WARNING)
    s = feed.settings
    with running_pipeline(feed, guarantee) as (pipeline, worker):
        feed.events(100)  # in flight while it is fenced
        fence(worker, s)
        assert any("the consumer is unusable" in r.getMessage() for r in caplog.records)
        feed.events(300)
        feed.flush()
        wait_rejoined(worker)
        wait_for_reference(pipeline, worker, feed, exact=guarantee == Guarantee.EXACTLY_ONCE)

    assert read_topic(s, s.topic("events-dlq"), expect=0, timeout_s=5) == []


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_fenced_after_a_kafka_restart__the_worker_joins_again_and_loses_nothing(
        outage: OutageStack, feed: Feed, guarantee: Guarantee) -> None:
    """The flaky hang seen in a full run: Kafka restarts while records await acknowledgement and
    commits are retried, then the worker's static member is fenced. It must rebuild its consumer,
    rejoin and process every later event."""
    s = feed.settings
    with running_pipeline(feed, guarantee) as (pipeline, worker):
        outage.stop_kafka()
        feed.events(200)  # the test's producer keeps them until the broker is back
        outage.start_kafka()
        fence(worker, s)
        feed.events(300)
        feed.flush()
        wait_rejoined(worker)
        wait_for_reference(pipeline, worker, feed, exact=guarantee == Guarantee.EXACTLY_ONCE)

    assert read_topic(s, s.topic("events-dlq"), expect=0, timeout_s=5) == []


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_registry_outage__records_wait_for_the_registry_and_none_is_dead_lettered(
        outage: OutageStack, feed: Feed, guarantee: Guarantee) -> None:
    s = feed.settings
    with running_pipeline(feed, guarantee) as (pipeline, worker):
        outage.stop_registry()
        feed.events(200)  # schema id cached by the worker: decoded without the registry
        feed.repairs(40)  # a schema id it has never seen: must wait, not be dead-lettered
        feed.events(200)
        feed.flush()
        wait_until(lambda: "schema registry unavailable" in problems(worker), timeout_s=60,
                   message="the worker to report partitions held for the registry")
        assert worker.health()[0], "degraded is still alive (200): a restart would not help"

        outage.start_registry()
        wait_for_reference(pipeline, worker, feed, exact=guarantee == Guarantee.EXACTLY_ONCE)
        wait_until(lambda: not problems(worker), timeout_s=60, message="the worker to report itself healthy")
        assert worker.metrics.dependency_retries.labels("schema registry")._value.get() >= 1

    assert read_topic(s, s.topic("events-dlq"), expect=0, timeout_s=5) == []


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_broker_outage__the_worker_rides_through_a_kafka_restart(outage: OutageStack, feed: Feed,
                                                                 guarantee: Guarantee) -> None:
    s = feed.settings
    with running_pipeline(feed, guarantee) as (pipeline, worker):
        outage.stop_kafka()
        feed.events(200)  # the test's producer keeps them until the broker is back
        wait_until(lambda: "Kafka unreachable" in problems(worker), timeout_s=60,
                   message="the worker to report Kafka unreachable")
        time.sleep(10)  # the scenario: a ten-second outage (nothing is awaited here)
        outage.start_kafka()
        feed.events(300)
        feed.flush()

        wait_for_reference(pipeline, worker, feed, exact=guarantee == Guarantee.EXACTLY_ONCE)
        wait_until(lambda: not problems(worker), timeout_s=60, message="the worker to report itself healthy")

    assert read_topic(s, s.topic("events-dlq"), expect=0, timeout_s=5) == []


def test_broker_outage__the_executor_runs_each_action_once_across_a_kafka_restart(outage: OutageStack,
                                                                                  tmp_path: Path) -> None:
    """Actions produced before, during and after a Kafka restart all run, each exactly once (a
    non-idempotent side effect: a line appended to a file), with one non-DUPLICATE result each."""
    from app.executor.agent import build_executor_agent
    from app.executor.config import ExecutorConfig
    from app.executor.plugins import load_builtin_plugins
    from tests.integration.executor.executor_helpers import action_record, read_records

    s = outage.isolated(tmp_path / "state")
    ran = tmp_path / "ran.txt"
    load_builtin_plugins()
    config = ExecutorConfig(commands={"mark": [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write("
                                                                     "sys.argv[2] + '\\n')", str(ran), "{id}"]})
    agent = build_executor_agent(config)
    writer = AvroSerde(RegistryClient.from_settings(s)).writer(builtin_schema("vigil.Action"))
    producer = make_producer(s)

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            record = action_record(f"act-{i:03d}", type="shell", target=f"host-{i % 7}",
                                   params={"command": "mark", "args": {"id": f"act-{i:03d}"}})
            producer.produce(s.topic("actions"), writer.encode(record), record["target"].encode())
        producer.poll(0)

    options = WorkerOptions(app_id=f"exec-{uuid.uuid4().hex[:6]}", instance_id="e1", guarantee=Guarantee.EXACTLY_ONCE,
                            max_retry_backoff_s=1.0)
    try:
        with worker_thread(s, [agent], options) as worker:
            send(0, 60)
            assert producer.flush(60) == 0
            wait_until(lambda: ran.exists() and len(ran.read_text().splitlines()) >= 60, timeout_s=120,
                       message="the first actions to run")
            outage.stop_kafka()
            send(60, 60)
            wait_until(lambda: "Kafka unreachable" in problems(worker), timeout_s=60,
                       message="the executor to report Kafka unreachable")
            time.sleep(10)  # the scenario: a ten-second outage (nothing is awaited here)
            outage.start_kafka()
            send(120, 60)
            assert producer.flush(120) == 0
            results = read_records(s, "action-results", expect=180, timeout_s=240)
    finally:
        producer.flush(10)
    lines = ran.read_text().splitlines()
    assert sorted(lines) == [f"act-{i:03d}" for i in range(180)], "every action ran exactly once"
    done = [r["action_id"] for r in results if r["status"] != "DUPLICATE"]
    assert sorted(done) == [f"act-{i:03d}" for i in range(180)]
    assert {r["status"] for r in results if r["status"] != "DUPLICATE"} == {"SUCCEEDED"}


def test_broker_outage__the_ui_rides_through_a_kafka_restart(outage: OutageStack, tmp_path: Path) -> None:
    """`vigil ui` (and the worker behind it) keep serving across a Kafka restart, and a status
    change emitted after it reaches the UI's API."""
    import httpx

    from app.web.testing import UiStack

    s = outage.isolated(tmp_path / "state")
    with UiStack(s, tmp_path / "ui", executor=False).start() as stack:
        def status_of(subject: str) -> str | None:
            items = httpx.get(f"{stack.ui_url}/api/v1/status", params={"subject": subject}, timeout=10).json()["items"]
            return items[0]["state"] if items else None

        stack.emit("ui-before", "svc", kind="STATUS", severity=0)
        wait_until(lambda: status_of("ui-before") == "OK", timeout_s=120, message="the UI showing the first event")
        outage.stop_kafka()
        assert httpx.get(f"{stack.ui_url}/healthz", timeout=10).status_code == 200  # serving while Kafka is down
        assert status_of("ui-before") == "OK"  # and answering from what it has
        time.sleep(10)  # the scenario: a ten-second outage (nothing is awaited here)
        outage.start_kafka()
        stack.emit("ui-after", "svc", kind="STATUS", severity=2)
        wait_until(lambda: status_of("ui-after") == "CRITICAL", timeout_s=180,
                   message="the UI showing an event emitted after the restart")
