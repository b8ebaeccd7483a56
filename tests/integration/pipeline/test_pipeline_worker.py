"""The built-in pipeline in a worker on real Kafka: alerts of transitions, absence on wall-clock
timers, bad input to the dead-letter topic, and the query CLI over the worker's HTTP API.

One worker (in this process, HTTP on a free port) serves the whole module; each test uses its own
identities."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from app.bus.clients import make_admin
from app.cli import CliContext
from app.config import Settings
from app.model.events import Event, now_ms
from app.model.schemas import builtin_schema, parse_schema_text
from app.model.serde import AvroSerde
from app.pipeline.agents import build_pipeline
from app.pipeline.cli import events_find_command, events_get_command, metrics_command, status_command
from app.registry.client import RegistryClient
from app.runtime.testing import partition_for
from app.runtime.worker import Worker, WorkerOptions
from app.sdk import Emitter
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port, wait_until
from tests.integration.runtime.kafka_helpers import produce_raw, worker_thread

#: The issue's "within 2 s + slack": generous, the machine is shared.
SLACK_S = 8.0


@dataclass
class Live:
    settings: Settings
    worker: Worker
    url: str
    emitter: Emitter

    def cli(self, command, *args: str) -> tuple[int, str, str]:
        overrides = {"kafka_bootstrap": self.settings.kafka_bootstrap,
                     "schema_registry_url": self.settings.schema_registry_url,
                     "topic_prefix": self.settings.topic_prefix}
        result = CliRunner().invoke(command, [*args, "--worker", self.url], obj=CliContext(overrides))
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix = f"p{uuid.uuid4().hex[:8]}-"
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": tmp_path_factory.mktemp("pl-state")})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    port = free_port()
    options = WorkerOptions(app_id=f"pl-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200,
                            http_port=port)
    with worker_thread(s, build_pipeline().stage(), options) as worker:
        wait_until(lambda: len(worker.engine.assigned()) == 6, timeout_s=60, message="partitions assigned")
        emitter = Emitter(s)
        yield Live(s, worker, f"http://127.0.0.1:{port}", emitter)
        emitter.close()


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def _same_partition(key: str, prefix: str, *, name: str = "heartbeat", partitions: int = 6) -> str:
    """A new subject whose identity `subject/name` the producer puts on the partition of `key`."""
    want = partition_for(key, partitions)
    while True:
        subject = _unique(prefix)
        if partition_for(f"{subject}/{name}", partitions) == want:
            return subject


def test_ok_critical_ok__exactly_the_expected_alerts_and_status(live: Live, topic_reader) -> None:
    subject = _unique("web")
    ids = [live.emitter.emit(subject=subject, name="check", severity=sev, text=f"sev {sev}") for sev in (0, 2, 0)]
    alerts = topic_reader(live.settings, "alerts")
    mine = lambda records: [a for a in records if a["subject"] == subject]  # noqa: E731
    alerts.wait_for(lambda r: len(mine(r)) >= 2, message="two alerts")
    code, out, err = live.cli(status_command, subject, "--json")
    assert code == 0, err
    [status] = [json.loads(line) for line in out.splitlines()]
    assert (status["state"], status["event_count"], status["transition_count"], status["last_event_id"]) == \
        ("OK", 3, 2, ids[2])
    # A later event of the same identity: its alert follows, in the same partition, any extra alert
    # the first three could have caused, so once it is there nothing else can be missing.
    marker = live.emitter.emit(subject=subject, name="check", severity=2, text="marker")
    got = alerts.wait_for(lambda r: [a for a in mine(r) if a["cause_event_id"] == marker] and mine(r),
                          message="the marker's alert")
    assert [(a["from_state"], a["to_state"], a["cause_event_id"]) for a in got] == \
        [("OK", "CRITICAL", ids[1]), ("CRITICAL", "OK", ids[2]), ("OK", "CRITICAL", marker)]
    statuses = topic_reader(live.settings, "status")
    statuses.wait_for(lambda r: [s["state"] for s in r if s["subject"] == subject] == ["OK", "CRITICAL", "OK",
                                                                                      "CRITICAL"],
                      message="status changes on the compacted topic")


def test_heartbeat_ttl__one_expiry_after_they_stop_none_while_they_flow(live: Live, topic_reader) -> None:
    subject = _unique("beat")
    alerts = topic_reader(live.settings, "alerts")
    last = None
    for _ in range(8):  # 4 s of heartbeats every 0.5 s, each promising the next within 2 s
        last = Event(subject=subject, name="heartbeat", ttl=2.0)
        live.emitter.emit(last)
        time.sleep(0.5)
    assert [a for a in alerts.poll() if a["subject"] == subject] == []
    stopped = time.monotonic()
    expired = alerts.wait_for(lambda r: [a for a in r if a["subject"] == subject], timeout_s=2.0 + SLACK_S,
                              message="the EXPIRED alert")
    assert time.monotonic() - stopped < 2.0 + SLACK_S
    [alert] = expired
    assert (alert["from_state"], alert["to_state"], alert["cause_event_id"]) == ("OK", "EXPIRED", last.id)
    assert alert["time"] - last.time == 2000  # expired at the deadline the last heartbeat set
    # A further ttl of silence, measured by the worker's own clock: a probe on the same partition,
    # promising the next event within the same ttl, expires only once that much time has passed.
    probe = Event(subject=_same_partition(f"{subject}/heartbeat", "probe"), name="heartbeat", ttl=2.0)
    live.emitter.emit(probe)
    alerts.wait_for(lambda r: [a for a in r if a["cause_event_id"] == probe.id], timeout_s=2.0 + SLACK_S,
                    message="the probe's expiry")
    # Then a later event of the identity: its alert comes after any second expiry of the same silence.
    marker = live.emitter.emit(subject=subject, name="heartbeat", text="back")
    got = alerts.wait_for(lambda r: [a for a in r if a["cause_event_id"] == marker] and
                          [a for a in r if a["subject"] == subject], message="the marker's alert")
    assert [(a["from_state"], a["to_state"], a["cause_event_id"]) for a in got] == \
        [("OK", "EXPIRED", last.id), ("EXPIRED", "OK", marker)]  # exactly one expiry for this silence


def test_events_get__returns_the_exact_event_emitted_and_find_lists_it(live: Live) -> None:
    event = Event(subject=_unique("db"), name="backup", kind="ARCHIVE", severity=1, text="backup took long",
                  tags={"site": "ams"}, metrics={"seconds": 812.5}, extended={"files": 12, "ok": True},
                  trace_id="t-1")
    live.emitter.emit(event)
    code, out, err = wait_until(lambda: (r := live.cli(events_get_command, event.id))[0] == 0 and r,
                                timeout_s=30, message="the event in the index")
    got = json.loads(out)
    assert got["event"] == event.to_record()
    assert (got["id"], got["time"], got["type"], got["topic"]) == \
        (event.id, event.time, "vigil.Event", live.settings.topic("events"))
    assert got["key"] == event.key and got["offset"] >= 0 and 0 <= got["partition"] < 6
    code, out, err = live.cli(events_find_command, "--subject", event.subject, "--since", "10m", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [event.id]
    code, out, err = live.cli(metrics_command, event.subject, "backup", "--window", "10s", "--json")
    assert code == 0, err
    [window] = [json.loads(line) for line in out.splitlines()]
    assert (window["metric"], window["count"], window["sum"]) == ("seconds", 1, 812.5)


def test_bad_input__dead_lettered_with_reason_custom_types_flow(live: Live, topic_reader) -> None:
    serde = AvroSerde(RegistryClient.from_settings(live.settings))
    writer = serde.writer(builtin_schema("vigil.Event"))
    subject = _unique("bad")
    base = Event(subject=subject, name="x").to_record()
    bad = {"no subject": {**base, "subject": ""}, "future": {**base, "id": "f", "time": now_ms() + 86_400_000},
           "nan": {**base, "id": "n", "metrics": {"load": math.nan}}}
    produce_raw(live.settings, live.settings.topic("events"),
                [(f"{subject}/x".encode(), writer.encode(record)) for record in bad.values()])
    # then one more bad record under the same key: its dead letter follows any extra of the first three
    marker = writer.encode({**base, "id": "marker", "subject": ""})
    produce_raw(live.settings, live.settings.topic("events"), [(f"{subject}/x".encode(), marker)])
    dlq = topic_reader(live.settings, "events-dlq", avro=False)
    mine = lambda records: [(v, h) for k, v, h in records if k == f"{subject}/x"]  # noqa: E731
    dead = dlq.wait_for(lambda r: any(v == marker for v, _ in mine(r)) and mine(r), message="the marker's dead letter")
    assert [v for v, _ in dead] == [writer.encode(record) for record in bad.values()] + [marker]  # as produced
    reasons = {h["vigil.field"]: h["vigil.error"] for _, h in dead}
    assert reasons["subject"] == "subject is empty"
    assert "in the future" in reasons["time"] and "NaN" in reasons["metrics.load"]
    # a type the pipeline never heard of, with subject/name/time: status and windows take it
    schema = parse_schema_text(json.dumps({"type": "record", "name": "Deploy", "namespace": "acme", "fields": [
        {"name": "subject", "type": "string"}, {"name": "name", "type": "string"}, {"name": "time", "type": "long"},
        {"name": "version", "type": "string"}, {"name": "duration_s", "type": "double"}]}))
    RegistryClient.from_settings(live.settings).register("acme.Deploy", schema.text)
    live.emitter.emit_typed("acme.Deploy", {"subject": subject, "name": "deploy", "version": "1.2",
                                            "duration_s": 42.0})
    code, out, _ = wait_until(lambda: (r := live.cli(status_command, subject, "--name", "deploy", "--json"))[1] and r,
                              timeout_s=30, message="the custom event's status")
    assert json.loads(out)["event_count"] == 1
    code, out, err = live.cli(metrics_command, subject, "deploy", "--metric", "duration_s", "--window", "1m", "--json")
    assert code == 0, err
    assert json.loads(out)["sum"] == 42.0
