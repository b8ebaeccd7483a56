"""The pipeline's rejections are rate-limited into events-dlq (app.dead_letter_limit): a flood of bad
records writes the bucket's worth per problem field and then a summary; valid events are untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import generate_latest

from app.dead_letter_limit import SUMMARY_REASON, DeadLetterLimits
from app.pipeline.agents import build_pipeline
from app.runtime.testing import AgentHarness
from tests.unit.pipeline.conftest import NOW_MS


def test_a_flood_of_bad_records__writes_the_burst_then_one_summary(make_record: Callable[..., dict[str, Any]],
                                                                   ) -> None:
    pipeline = build_pipeline(dead_letter_limits=DeadLetterLimits(burst=5, rate_per_s=1, summary_interval_s=60))
    harness = AgentHarness([pipeline.agent], partitions=1, wall_clock_ms=NOW_MS)
    bad = [make_record(severity=7, subject=f"h{n}") for n in range(1000)]
    good = [make_record(subject=f"h{n}") for n in range(0, 1000, 100)]
    harness.feed_many("events", bad[:500] + good + bad[500:] + [make_record(subject="")])
    harness.commit()

    dead = harness.outputs("events-dlq")
    assert [(o.headers or {})["vigil.field"] for o in dead] == ["severity"] * 5 + ["subject"]  # per field
    assert pipeline.stats()["rejected"] == {"severity": 1000, "subject": 1}  # every one still counted
    assert len(pipeline.tracker.statuses(subject="h*", name="load")) == len(good)  # valid ones all folded
    assert pipeline.dead_letter_limit.summarised("pipeline", "severity") == 995

    harness.clear_outputs()
    harness.advance_wall_clock(60_000)  # a minute later the next batch writes the summary
    harness.feed("events", make_record(subject="later"))
    harness.commit()
    (summary,) = harness.outputs("events-dlq")
    assert summary.headers is not None
    assert summary.headers["vigil.reason"] == SUMMARY_REASON and summary.headers["vigil.source"] == "pipeline"
    assert json.loads(summary.value)["summarised"] == 995
    assert json.loads(summary.value)["reason"] == "severity"
    assert b'vigil_dead_letters_summarised_total{reason="severity",source="pipeline"} 995.0' in \
        generate_latest(pipeline.metrics)
    assert pipeline.metrics in pipeline.stage().collectors
