"""State expiry in a worker on real Kafka: an identity quiet for `state_retention` (event time) is
forgotten (its status tombstoned on the compacted topic, counted on /metrics), while one whose
absence is still owed keeps its state until its EXPIRED alert has gone out.

Deterministic: every event carries an explicit time half an hour in the past, so only event time
(the partition's watermark, moved by a third identity on the same partition) decides expiry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.bus.clients import make_admin
from app.config import Settings
from app.model.events import Event, now_ms
from app.pipeline.agents import build_pipeline
from app.pipeline.config import PipelineConfig
from app.runtime.testing import partition_for
from app.runtime.worker import Worker, WorkerOptions
from app.sdk import Emitter
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port, wait_until
from tests.integration.runtime.kafka_helpers import worker_thread

S = 1000
M = 60 * S


@dataclass
class Live:
    settings: Settings
    worker: Worker
    url: str
    emitter: Emitter


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix = f"x{uuid.uuid4().hex[:8]}-"
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": tmp_path_factory.mktemp("expiry-state")})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    port = free_port()
    options = WorkerOptions(app_id=f"ex-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200,
                            http_port=port)
    stage = build_pipeline(PipelineConfig.model_validate({"state_retention": "1m"})).stage()
    with worker_thread(s, stage, options) as worker:
        wait_until(lambda: len(worker.engine.assigned()) == 6, timeout_s=60, message="partitions assigned")
        emitter = Emitter(s)
        yield Live(s, worker, f"http://127.0.0.1:{port}", emitter)
        emitter.close()


def _subjects(prefix: str, count: int, *, name: str, partitions: int = 6) -> list[str]:
    """`count` new subjects whose identities (subject/name) share one partition of `events`."""
    first = f"{prefix}-{uuid.uuid4().hex[:6]}"
    want = partition_for(f"{first}/{name}", partitions)
    found = [first]
    while len(found) < count:
        subject = f"{prefix}-{uuid.uuid4().hex[:6]}"
        if partition_for(f"{subject}/{name}", partitions) == want:
            found.append(subject)
    return found


def _known(live: Live, subject: str) -> bool:
    answer = httpx.get(f"{live.url}/status", params={"subject": subject}, timeout=10)
    answer.raise_for_status()
    return bool(answer.json()["statuses"])


def _expired_total(live: Live) -> float:
    text = httpx.get(f"{live.url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith('vigil_state_expired_total{kind="identity"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_quiet_identity_is_forgotten_and_a_pending_absence_fires_first(live: Live, topic_reader) -> None:
    quiet, owing, mover = _subjects("exp", 3, name="svc")
    base = now_ms() - 30 * M
    live.emitter.emit(Event(subject=quiet, name="svc", time=base))
    live.emitter.emit(Event(subject=owing, name="svc", time=base, ttl=300.0))  # owes an absence at base + 5m
    for step in range(0, 3 * M + 1, 10 * S):  # event time passes the 1m retention, not the 5m deadline
        live.emitter.emit(Event(subject=mover, name="svc", time=base + step))
    statuses = topic_reader(live.settings, "status", avro=False)
    alerts = topic_reader(live.settings, "alerts")
    statuses.wait_for(lambda r: (f"{quiet}/svc", None) in [(k, v) for k, v, _ in r], message="quiet's tombstone")
    assert not _known(live, quiet)
    assert _known(live, owing)  # held: its absence is owed
    # No more events: the wall clock judges the silent identity, and its EXPIRED alert goes out.
    [expired] = alerts.wait_for(lambda r: [a for a in r if a["subject"] == owing], message="owing's EXPIRED alert")
    assert (expired["to_state"], expired["time"]) == ("EXPIRED", base + 5 * M)
    assert _known(live, owing)
    assert (f"{owing}/svc", None) not in [(k, v) for k, v, _ in statuses.poll()]
    for step in range(3 * M, 10 * M + 1, 30 * S):  # event time moves on: now it may go
        live.emitter.emit(Event(subject=mover, name="svc", time=base + step))
    statuses.wait_for(lambda r: (f"{owing}/svc", None) in [(k, v) for k, v, _ in r], message="owing's tombstone")
    assert not _known(live, owing)
    assert _known(live, mover)
    assert [a["subject"] for a in alerts.poll() if a["subject"] in (quiet, owing)] == [owing]  # one alert, no more
    wait_until(lambda: _expired_total(live) >= 2, timeout_s=30, message="vigil_state_expired_total on /metrics")
