"""The built-in pipeline agent in the AgentHarness (no Kafka): alerts, status, absence, windows,
rejections, duplicates and out-of-order events, restarts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.pipeline.agents import Pipeline, build_pipeline
from app.pipeline.config import PipelineConfig
from app.pipeline.tracker import ABSENCE_RECHECK_MS
from app.runtime.testing import AgentHarness
from tests.unit.pipeline.conftest import NOW_MS

S = 1000


class Bench:
    """A pipeline in a harness, with an event factory and output helpers."""

    def __init__(self, config: PipelineConfig, partitions: int = 2) -> None:
        self.pipeline: Pipeline = build_pipeline(config)
        self.harness = AgentHarness([self.pipeline.agent], partitions=partitions, wall_clock_ms=NOW_MS)
        self._ids: Iterator[int] = itertools.count(1)

    def event(self, severity: int = 0, *, at_s: float = 0, subject: str = "web1", name: str = "load",
              metrics: dict[str, float] | None = None, ttl: float | None = None, id: str | None = None,
              **fields: Any) -> dict[str, Any]:
        """A vigil.Event record as fastavro decodes it."""
        record = {"id": id or f"e{next(self._ids)}", "time": NOW_MS + int(at_s * S), "subject": subject, "name": name,
                  "kind": "STATUS", "severity": severity, "origin": "test", "text": f"sev {severity}", "tags": {},
                  "metrics": metrics or {}, "ttl": ttl, "extended": None, "trace_id": None}
        record.update(fields)
        return record

    def feed(self, *records: dict[str, Any], type_name: str = "vigil.Event") -> None:
        self.harness.feed_many("events", list(records), type_name=type_name)
        self.harness.commit()  # encodes every changed value with its table's codec, as a worker commit does

    def out(self, topic: str) -> list[dict[str, Any]]:
        return [o.value for o in self.harness.outputs(topic)]

    def transitions(self) -> list[tuple[str, str, str | None]]:
        return [(a["from_state"], a["to_state"], a["cause_event_id"]) for a in self.out("alerts")]

    def wall(self, ms: int) -> int:
        fired = self.harness.advance_wall_clock(ms)
        self.harness.commit()
        return fired

    def status(self, subject: str = "web1", name: str = "load") -> dict[str, Any]:
        [found] = self.pipeline.tracker.statuses(subject=subject, name=name)
        return found


@pytest.fixture
def bench() -> Callable[..., Bench]:
    return lambda partitions=2, **config: Bench(PipelineConfig.model_validate(config), partitions)


def test_ok_critical_ok__alerts_exactly_each_transition(bench: Callable[..., Bench]) -> None:
    b = bench()
    b.feed(b.event(0, id="a"), b.event(2, at_s=1, id="b"), b.event(2, at_s=2, id="c"), b.event(0, at_s=3, id="d"))
    assert b.transitions() == [("OK", "CRITICAL", "b"), ("CRITICAL", "OK", "d")]
    assert [s["state"] for s in b.out("status")] == ["OK", "CRITICAL", "OK"]
    status = b.status()
    assert (status["state"], status["event_count"], status["transition_count"], status["last_event_id"]) == \
        ("OK", 4, 2, "d")
    assert status["since"] == NOW_MS + 3 * S


def test_first_sighting_not_ok__alerts_from_none(bench: Callable[..., Bench]) -> None:
    b = bench()
    b.feed(b.event(1, id="w"))
    assert b.transitions() == [("NONE", "WARNING", "w")]


def test_status_of_any_bridge_folds_by_identity(bench: Callable[..., Bench]) -> None:
    b = bench()
    b.feed(b.event(0, origin="beacon"), b.event(2, at_s=1, origin="nagios"), b.event(0, subject="db1", at_s=1))
    assert {(s["subject"], s["state"]) for s in b.pipeline.tracker.statuses()} == {("web1", "CRITICAL"), ("db1", "OK")}
    assert [s["subject"] for s in b.pipeline.tracker.statuses(state="OK")] == ["db1"]
    assert [s["subject"] for s in b.pipeline.tracker.statuses(subject="w*")] == ["web1"]


def test_many_transitions__flapping(bench: Callable[..., Bench]) -> None:
    b = bench(flap={"window": "10m", "enter_transitions": 4, "exit_transitions": 2})
    b.feed(*[b.event(2 * (i % 2), at_s=i) for i in range(6)])
    assert b.status()["flapping"] is True
    assert b.out("alerts")[-1]["flapping"] is True


def test_duplicate_delivery__counted_once_in_status_and_windows(bench: Callable[..., Bench]) -> None:
    b = bench()
    ev = b.event(2, metrics={"x": 5.0})
    b.feed(ev, ev)
    assert b.status()["event_count"] == 1
    assert b.transitions() == [("NONE", "CRITICAL", ev["id"])]
    [window, _] = [w for w in b.pipeline.tracker.windows(subject="web1", name="load")]
    assert window["count"] == 1


def test_out_of_order_within_grace__applied_in_event_time_order(bench: Callable[..., Bench]) -> None:
    b = bench(window_sizes=["10s"], grace="5s")
    b.feed(b.event(2, at_s=3, metrics={"x": 3.0}, id="late-news"), b.event(0, at_s=1, metrics={"x": 1.0}, id="old"))
    status = b.status()
    assert (status["state"], status["last_event_id"], status["event_count"]) == ("CRITICAL", "late-news", 2)
    [window] = b.pipeline.tracker.windows(subject="web1", name="load")
    assert (window["count"], window["sum"], window["last"]) == (2, 4.0, 3.0)  # last = latest event time


def test_late_beyond_grace__dropped_from_windows_but_counted_in_status(bench: Callable[..., Bench]) -> None:
    b = bench(window_sizes=["10s"], grace="1s")
    b.feed(b.event(at_s=25, metrics={"x": 1.0}), b.event(at_s=2, metrics={"x": 9.0}))
    assert b.pipeline.tracker.late_dropped == 1
    assert [w["sum"] for w in b.pipeline.tracker.windows(subject="web1", name="load")] == [1.0]
    assert b.status()["event_count"] == 2


def test_closed_windows__published_with_exact_stats_and_sketch_quantiles(bench: Callable[..., Bench],
                                                                       assert_valid_record: Any) -> None:
    b = bench(window_sizes=["10s", "1m"], grace="2s")
    values = [float(v) for v in range(1, 101)]
    b.feed(*[b.event(at_s=i * 0.05, metrics={"lat": v, "n": 1.0}) for i, v in enumerate(values)])
    # watermark 17.5 s: the first 10 s window closed at 10 + 2, published within the close spread (5 s) after
    b.feed(b.event(at_s=17.5, metrics={"lat": 1.0}))
    closed = {(r["size_ms"], r["metric"]): r for r in b.out("metrics")}
    assert set(closed) == {(10_000, "lat"), (10_000, "n")}
    lat = closed[(10_000, "lat")]
    assert_valid_record("vigil.WindowAggregate", lat)
    assert (lat["count"], lat["sum"], lat["min"], lat["max"], lat["mean"], lat["last"]) == \
        (100, sum(values), 1.0, 100.0, sum(values) / 100, 100.0)
    assert (lat["window_start"], lat["window_end"], lat["subject"], lat["name"]) == \
        (NOW_MS, NOW_MS + 10_000, "web1", "load")
    for field, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        exact = values[math.ceil(q * 100) - 1]
        assert lat[field] == pytest.approx(exact, rel=0.02)
    # the window stays queryable after it closed, beside the open ones
    shown = b.pipeline.tracker.windows(subject="web1", name="load", metric="lat", size_ms=10_000)
    assert [(w["window_start"] - NOW_MS, w["count"], w["closed"]) for w in shown] == \
        [(0, 100, True), (10_000, 1, False)]


def test_closed_windows__only_counted_without_window_records(bench: Callable[..., Bench]) -> None:
    # A backtest's pipeline (nothing reads window records): the same windows close, none is sent,
    # and take_unsent_windows counts what would have been sent, once.
    config = {"window_sizes": ["10s", "1m"], "grace": "2s"}
    sent, counted = bench(**config), bench(**config)
    counted.pipeline = Pipeline(PipelineConfig.model_validate(config), window_records=False)
    counted.harness = AgentHarness([counted.pipeline.agent], partitions=2, wall_clock_ms=NOW_MS)
    for b in (sent, counted):
        b.feed(*[b.event(at_s=i * 0.5, metrics={"lat": float(i), "n": 1.0}) for i in range(200)])
    windows = len(sent.out("metrics"))
    assert windows > 10 and sent.pipeline.tracker.take_unsent_windows() == 0
    assert counted.out("metrics") == [] and counted.pipeline.tracker.take_unsent_windows() == windows
    assert counted.pipeline.tracker.take_unsent_windows() == 0
    assert counted.out("status") == sent.out("status")


def test_windows__retention_deletes_closed_windows_by_event_time(bench: Callable[..., Bench]) -> None:
    b = bench(window_sizes=["10s"], grace="0s", window_retention="1m")
    b.feed(b.event(at_s=-3 * 3600, metrics={"x": 1.0}), b.event(at_s=-3 * 3600 + 15, metrics={"x": 2.0}))
    assert len(b.pipeline.tracker.windows(subject="web1", name="load")) == 2
    b.feed(b.event(metrics={"x": 3.0}))  # event time past the bucket's end + retention
    assert [w["sum"] for w in b.pipeline.tracker.windows(subject="web1", name="load")] == [3.0]


def test_absence__one_expiry_per_silence_cleared_by_next_event(bench: Callable[..., Bench]) -> None:
    b = bench()
    b.feed(b.event(0, ttl=2.0, id="hb1"))
    assert b.wall(1999) == 0 and b.transitions() == []
    b.wall(1)  # the deadline passed, and nothing moves on the partition: expire at the next check
    b.wall(ABSENCE_RECHECK_MS)
    assert b.transitions() == [("OK", "EXPIRED", "hb1")]
    assert b.out("alerts")[0]["time"] == NOW_MS + 2000
    for _ in range(5):
        b.wall(60_000)
    assert len(b.out("alerts")) == 1
    b.feed(b.event(0, at_s=400, ttl=2.0, id="hb2"))
    assert b.transitions()[-1] == ("EXPIRED", "OK", "hb2")
    assert b.status()["state"] == "OK"


def test_absence__no_expiry_while_heartbeats_flow(bench: Callable[..., Bench]) -> None:
    b = bench()
    for i in range(20):
        b.feed(b.event(0, at_s=i, ttl=2.0))
        b.wall(S)
    assert b.out("alerts") == []


def test_absence__waits_while_the_partition_catches_up(bench: Callable[..., Bench]) -> None:
    b = bench(partitions=1)
    b.feed(b.event(0, ttl=2.0, id="hb1"))
    b.wall(10 * S)  # the deadline passed on the wall clock, but events still arrive (a backlog)...
    b.feed(b.event(0, subject="other", at_s=1))  # ...and move event time: not silent yet
    b.wall(ABSENCE_RECHECK_MS)
    assert b.out("alerts") == []
    b.feed(b.event(0, at_s=1.5, ttl=2.0, id="hb2"))  # the heartbeat that was waiting in the backlog
    for _ in range(3):
        b.wall(ABSENCE_RECHECK_MS)
    assert b.transitions() == [("OK", "EXPIRED", "hb2")]  # the backlog is read: hb2's promise is broken


def test_absence__a_silence_spanning_a_restart_still_expires(bench: Callable[..., Bench]) -> None:
    b = bench()
    b.feed(b.event(0, ttl=2.0, id="before"))
    b.harness.restart()
    b.wall(2 * S)
    b.wall(ABSENCE_RECHECK_MS)
    assert b.transitions() == [("OK", "EXPIRED", "before")]


def test_bad_input__dead_lettered_with_reason_and_never_moves_the_watermark(bench: Callable[..., Bench]) -> None:
    b = bench(window_sizes=["10s"], grace="0s", max_future="5m")
    b.feed(b.event(at_s=1, metrics={"x": 1.0}))
    bad = [b.event(subject=""), b.event(at_s=86_400), b.event(metrics={"x": math.nan}), b.event(severity=7)]
    b.feed(*bad)
    dead = b.harness.outputs("events-dlq")
    assert [(o.headers["vigil.field"], o.headers["vigil.agent"]) for o in dead] == \
        [("subject", "pipeline"), ("time", "pipeline"), ("metrics.x", "pipeline"), ("severity", "pipeline")]
    assert "in the future" in dead[1].headers["vigil.error"] and "NaN" in dead[2].headers["vigil.error"]
    assert [o.value for o in dead] == [repr(r).encode() for r in bad]  # the records as consumed
    assert b.pipeline.stats()["rejected"] == {"subject": 1, "time": 1, "metrics.x": 1, "severity": 1}
    b.feed(b.event(at_s=2, metrics={"x": 2.0}))  # the future event did not close the open window
    assert [w["count"] for w in b.pipeline.tracker.windows(subject="web1", name="load")] == [2]
    assert b.harness.dead_letters == []  # handled, not raised


def test_unknown_event_type__flows_through_status_and_windows(bench: Callable[..., Bench]) -> None:
    b = bench()
    deploy = {"subject": "web1", "name": "deploy", "time": NOW_MS, "version": "1.2", "duration_s": 42.5}
    b.feed(deploy, type_name="acme.Deploy")
    status = b.status(name="deploy")
    assert (status["state"], status["event_count"]) == ("OK", 1)
    [window, _] = b.pipeline.tracker.windows(subject="web1", name="deploy")
    assert (window["metric"], window["sum"]) == ("duration_s", 42.5)
    assert b.pipeline.archive.lookup(status["last_event_id"]).type == "acme.Deploy"


def test_archive__get_by_id_and_find_by_identity_and_time(bench: Callable[..., Bench]) -> None:
    b = bench(partitions=3)
    b.feed(b.event(id="a1", subject="web1", at_s=-3600), b.event(id="a2", subject="web2", at_s=-3599),
           b.event(id="a3", subject="db1", at_s=-3598), b.event(id="a4", subject="web1"))
    found = b.pipeline.archive.lookup("a2")
    assert (found.subject, found.time_ms, found.type) == ("web2", NOW_MS - 3599 * S, "vigil.Event")
    assert found.offset == 0 or found.partition != b.pipeline.archive.lookup("a1").partition
    hour_ago = NOW_MS - 3600 * S

    def find(**query: Any) -> list[str]:
        return [f.id for f in b.pipeline.find_events(**{"since_ms": hour_ago, "until_ms": NOW_MS, "limit": 10,
                                                        **query})]

    assert find() == ["a4", "a3", "a2", "a1"]
    assert find(subject="web*") == ["a4", "a2", "a1"]
    assert find(subject="web1", name="load", since_ms=hour_ago + 1) == ["a4"]
    assert find(subject="*", name="lo?d", until_ms=NOW_MS - 1) == ["a3", "a2", "a1"]
    assert find(limit=2) == ["a4", "a3"]
    assert b.pipeline.archive.lookup("nope") is None


def test_archive__retention_forgets_old_hours(bench: Callable[..., Bench]) -> None:
    b = bench(partitions=1, archive_retention="1h")
    b.feed(b.event(id="old", at_s=-3 * 3600), b.event(id="new"), b.event(id="newer", at_s=1))
    assert b.pipeline.archive.lookup("old") is None  # its hour ended more than the retention ago
    assert b.pipeline.archive.lookup("new") is not None


def test_archive__find_reads_pages_and_waiting_references_alike(bench: Callable[..., Bench]) -> None:
    b = bench(partitions=1)
    b.feed(*[b.event(id=f"p{i:02d}", at_s=-100 + i) for i in range(40)])  # two full pages and 8 waiting
    b.harness.restart()
    found = b.pipeline.find_events(subject="web1", name="load", since_ms=NOW_MS - 3600 * S, until_ms=NOW_MS,
                                   limit=100)
    assert [f.id for f in found] == [f"p{i:02d}" for i in reversed(range(40))]
    assert {(f.partition, f.offset) for f in found} == {(0, i) for i in range(40)}


def test_close_timers__spread_per_identity_over_the_close_spread() -> None:
    from app.pipeline.tracker import close_delay_ms

    delays = [close_delay_ms(f"host-{i}/load", 5_000) for i in range(2_000)]
    assert all(0 <= d < 5_000 for d in delays)
    assert len(set(delays)) > 1_500  # identities closing at one boundary do not all fire in one batch
    # evenly: each second of the spread gets about a fifth
    assert all(300 <= sum(1 for d in delays if k * 1000 <= d < (k + 1) * 1000) <= 500 for k in range(5))
    # fixed across processes and versions (not Python's salted hash): replays publish at the same point
    assert close_delay_ms("host-1/load", 1_000) == 398
    assert close_delay_ms("host-1/load", 0) == 0


def test_close_spread__at_most_half_the_smallest_window() -> None:
    from app.pipeline.config import PipelineConfig

    assert PipelineConfig().close_spread_effective_ms == 5_000  # windows [10s, 1m]
    assert PipelineConfig.model_validate({"window_sizes": ["4s", "1m"]}).close_spread_effective_ms == 2_000
    assert PipelineConfig.model_validate({"close_spread": "0"}).close_spread_effective_ms == 0
