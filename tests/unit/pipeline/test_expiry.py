"""Expiry of identity state in the pipeline (no Kafka): an identity not seen for `state_retention`
(event time) is forgotten, its status tombstoned, its events still findable; a pending absence alert
fires first."""

from __future__ import annotations

import itertools
from typing import Any

from app.pipeline.agents import build_pipeline
from app.pipeline.config import PipelineConfig
from app.pipeline.tracker import STATUS_TOPIC
from app.runtime.testing import AgentHarness
from tests.unit.pipeline.conftest import NOW_MS

S = 1000
M = 60 * S


class Bench:
    def __init__(self, **config: Any) -> None:
        # max_future: the events run ahead of the harness's wall clock, which only absence timers follow
        settings = {"state_retention": "10m", "max_future": "1d", **config}
        self.pipeline = build_pipeline(PipelineConfig.model_validate(settings))
        self.harness = AgentHarness([self.pipeline.agent], partitions=1, wall_clock_ms=NOW_MS)
        self._ids = itertools.count(1)

    def feed(self, subject: str, at_ms: int, **fields: Any) -> None:
        record = {"id": f"e{next(self._ids)}", "time": NOW_MS + at_ms, "subject": subject, "name": "load",
                  "kind": "STATUS", "severity": 0, "origin": "test", "text": "", "tags": {}, "metrics": {},
                  "ttl": None, "extended": None, "trace_id": None, **fields}
        self.harness.feed("events", record)
        self.harness.commit()

    def keep_alive(self, until_ms: int, *, from_ms: int = 0, subject: str = "busy") -> None:
        """Events of another identity every 30s: they move the partition's event time."""
        for at in range(from_ms, until_ms + 1, 30 * S):
            self.feed(subject, at)

    def known(self) -> set[str]:
        return {s["subject"] for s in self.pipeline.tracker.statuses()}

    def tombstones(self) -> list[str]:
        return [o.key for o in self.harness.outputs(STATUS_TOPIC) if o.value is None]  # type: ignore[misc]

    @property
    def expired(self) -> int:
        return self.pipeline.tracker.expiry.counts.get("identity", 0)


def test_a_quiet_identity_is_forgotten_after_the_retention_and_its_status_tombstoned() -> None:
    bench = Bench()
    bench.feed("gone", 0)
    bench.keep_alive(9 * M)
    assert bench.known() == {"gone", "busy"}  # not before the retention passed
    bench.keep_alive(20 * M, from_ms=9 * M + 30 * S)
    assert bench.known() == {"busy"}
    assert bench.tombstones() == ["gone/load"]
    assert bench.expired == 1
    assert bench.pipeline.stats()["expired"] == 1


def test_an_identity_seen_again_is_kept_and_one_seen_after_expiry_starts_afresh() -> None:
    bench = Bench()
    bench.feed("back", 0)
    bench.keep_alive(8 * M)
    bench.feed("back", 8 * M)  # seen again within the retention
    bench.keep_alive(17 * M, from_ms=8 * M)
    assert "back" in bench.known()
    bench.keep_alive(30 * M, from_ms=17 * M)
    assert "back" not in bench.known()
    bench.feed("back", 31 * M, severity=2)
    [status] = bench.pipeline.tracker.statuses(subject="back")
    assert status["event_count"] == 1  # a first sighting again
    assert [a["from_state"] for a in (o.value for o in bench.harness.outputs("alerts"))] == ["NONE"]


def test_a_pending_absence_alert_fires_before_the_identity_is_forgotten() -> None:
    bench = Bench()
    bench.feed("silent", 0, ttl=15 * 60.0)  # promises another event within 15m; the retention is 10m
    bench.keep_alive(16 * M)  # event time passes the retention and the deadline...
    assert "silent" in bench.known()  # ...but the absence was not judged yet: held
    bench.harness.advance_wall_clock(16 * M)  # the absence timer fires
    [alert] = [o.value for o in bench.harness.outputs("alerts")]
    assert (alert["subject"], alert["to_state"]) == ("silent", "EXPIRED")
    bench.keep_alive(20 * M, from_ms=16 * M)
    assert "silent" not in bench.known()
    assert bench.tombstones() == ["silent/load"]


def test_events_of_a_forgotten_identity_stay_findable_for_the_archive_retention() -> None:
    bench = Bench()
    bench.feed("gone", 0)
    bench.feed("gone", S)
    bench.keep_alive(20 * M)
    assert "gone" not in bench.known()
    found = bench.pipeline.find_events(subject="gone", since_ms=NOW_MS, until_ms=NOW_MS + M, limit=10)
    assert [e.time_ms - NOW_MS for e in found] == [S, 0]


def test_expiry_checks_survive_a_restart() -> None:
    bench = Bench()
    bench.feed("gone", 0)
    bench.keep_alive(5 * M)
    bench.harness.restart()
    bench.keep_alive(20 * M, from_ms=5 * M + 30 * S)
    assert bench.known() == {"busy"}


def test_retention_zero_never_forgets() -> None:
    bench = Bench(state_retention=0)
    bench.feed("quiet", 0)
    bench.keep_alive(60 * M)
    assert bench.known() == {"quiet", "busy"}
    assert bench.expired == 0
