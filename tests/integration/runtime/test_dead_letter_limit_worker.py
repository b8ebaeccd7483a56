"""The worker's dead letters are rate-limited (issue 18.5) on the real Kafka: a flood of records that
do not decode writes the bucket's worth to the dead-letter topic and, at shutdown, one summary of the
rest; the good records around them are all processed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from app.config import Settings
from app.dead_letter_limit import SUMMARY_REASON
from app.model.events import Event
from app.runtime.agent import AgentRegistry, agent
from app.runtime.worker import WorkerOptions
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import produce_events, produce_raw, read_topic, worker_thread


def test_a_flood_of_undecodable_records__writes_the_burst_and_a_summary(
        settings: Settings, new_topic, tmp_path: Path) -> None:
    source, dlq = new_topic("src"), new_topic("dlq")
    produce_events(settings, source, [Event(subject=f"h{n}", name="m", metrics={"x": 1.0}) for n in range(10)])
    produce_raw(settings, source, [(b"k", b"not avro %d" % n) for n in range(300)])
    produce_events(settings, source, [Event(subject=f"h{n}", name="m", metrics={"x": 1.0}) for n in range(10, 20)])
    seen: list[str] = []
    registry = AgentRegistry()

    @agent(source, name="counter", dlq_topic=dlq, registry=registry)
    def counter(event: dict, ctx: object) -> None:
        seen.append(event["subject"])

    frozen_ms = 1_700_000_000_000  # the bucket does not refill: exact numbers
    options = WorkerOptions(app_id=f"app-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200,
                            clock=lambda: frozen_ms)
    limited = settings.model_copy(update={"state_dir": tmp_path, "dlq_burst": 5})
    with worker_thread(limited, registry.agents(), options) as worker:
        wait_until(lambda: len(seen) == 20, message="the good records processed")
        wait_until(lambda: worker.dead_letter_limit.summarised("(decode)", "decode") == 295, message="the flood")
    # shut down: the pending summary is written with the final commit

    dead = read_topic(settings, dlq, expect=6)
    reasons = [dict(m.headers() or []).get("vigil.reason") for m in dead]
    assert reasons == [None] * 5 + [SUMMARY_REASON.encode()]  # 5 dead letters as before, then the summary
    assert [m.value() for m in dead[:5]] == [b"not avro %d" % n for n in range(5)]
    summary = json.loads(dead[5].value())
    assert (summary["source"], summary["reason"], summary["summarised"]) == ("(decode)", "decode", 295)
    assert sorted(seen) == sorted(f"h{n}" for n in range(20))
