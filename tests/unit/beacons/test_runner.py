"""The runner: a failing beacon reports about itself and never stops the others; scheduling."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.beacons.base import Beacon, BeaconContext
from app.beacons.publisher import RUNNER_EVENT_NAME
from app.beacons.runner import Runner, StopSignal
from app.model.events import Event, Severity
from tests.conftest import wait_until
from tests.unit.beacons.conftest import CollectingPublisher


def counting(name: str = "good", interval_ms: int = 1000) -> Beacon:
    """Emits one event per run with the run number; remembers the count in its state."""

    def check(ctx: BeaconContext, state: int | None) -> tuple[list[Event], int]:
        n = (state or 0) + 1
        return [ctx.event(name, metrics={"run": float(n)})], n

    return Beacon(name, interval_ms, check)


class Flaky:
    """A beacon whose behaviour the test sets: raise this, report these problems, or work."""

    def __init__(self, name: str = "disk") -> None:
        self.error: BaseException | None = None
        self.problems: list[tuple[str, str]] = []
        self.seen_states: list[Any] = []
        self.beacon = Beacon(name, 1000, self.check)

    def check(self, ctx: BeaconContext, state: Any) -> tuple[list[Event], Any]:
        self.seen_states.append(state)
        if self.error is not None:
            raise self.error
        for item, problem in self.problems:
            ctx.problem(item, problem)
        return [ctx.event("disk:/")], (state or 0) + 1


def failures(publisher: CollectingPublisher, beacon: str = "disk") -> list[tuple[int, str]]:
    return [(e.severity, e.tags["state"]) for e in publisher.named(f"beacon:{beacon}")]


def test_a_raising_beacon_reports_about_itself_and_the_others_run(publisher: CollectingPublisher) -> None:
    flaky = Flaky()
    flaky.error = PermissionError(13, "Permission denied", "/data")
    runner = Runner([counting("before"), flaky.beacon, counting("after")], publisher, subject="web1",
                    tags={"role": "web"})
    runner.run_once()
    assert [e.name for e in publisher.events] == ["before", "beacon:disk", "after"]
    (failure,) = publisher.named("beacon:disk")
    assert (failure.severity, failure.subject, failure.tags["beacon"], failure.tags["role"]) == (
        Severity.CRITICAL, "web1", "disk", "web")
    assert "PermissionError: [Errno 13] Permission denied: '/data'" in failure.text
    assert runner.failing() == ["disk"]


def test_failure_reported_when_it_starts_or_changes_then_recovery(publisher: CollectingPublisher) -> None:
    flaky = Flaky()
    runner = Runner([flaky.beacon], publisher, subject="web1")
    runner.run_once()                                   # works: state 1
    flaky.error = FileNotFoundError(2, "No such file or directory", "/x")
    runner.run_once()
    runner.run_once()                                   # same failure: not repeated
    flaky.error = RuntimeError("other")
    runner.run_once()                                   # a different failure is news
    flaky.error = None
    runner.run_once()
    assert failures(publisher) == [(2, "failing"), (2, "failing"), (0, "ok")]
    assert flaky.seen_states == [None, 1, 1, 1, 1]      # failed runs kept the last good state
    assert runner.failing() == []


def test_item_problems_are_a_beacon_failure_while_its_other_items_report(publisher: CollectingPublisher) -> None:
    flaky = Flaky()
    flaky.problems = [("disk:/data", "PermissionError: denied")]
    runner = Runner([flaky.beacon], publisher, subject="web1")
    runner.run_once()
    assert [e.name for e in publisher.events] == ["disk:/", "beacon:disk"]
    assert "disk:/data: PermissionError: denied" in publisher.named("beacon:disk")[0].text
    flaky.problems = []
    runner.run_once()
    assert failures(publisher) == [(2, "failing"), (0, "ok")]


def test_even_exit_in_a_plugin_does_not_stop_the_runner(publisher: CollectingPublisher) -> None:
    flaky = Flaky("plugin")
    flaky.error = SystemExit(3)
    runner = Runner([flaky.beacon, counting()], publisher, subject="web1")
    runner.run_once()
    assert failures(publisher, "plugin") == [(2, "failing")]
    assert publisher.named("good")


def test_announce_lists_the_beacons(publisher: CollectingPublisher) -> None:
    runner = Runner([counting("a", 10_000), counting("b", 90_000)], publisher, subject="web1")
    event = runner.announce()
    assert (event.name, event.origin, event.tags["change"]) == (RUNNER_EVENT_NAME, RUNNER_EVENT_NAME, "started")
    assert "a every 10s, b every 1m30s" in event.text
    assert event.extended == {"beacons": {"a": 10_000, "b": 90_000}}


def test_two_beacons_with_one_name_are_refused(publisher: CollectingPublisher) -> None:
    with pytest.raises(ValueError, match="two beacons named x"):
        Runner([counting("x"), counting("x")], publisher, subject="web1")


def test_run__keeps_every_beacon_going_until_stopped(publisher: CollectingPublisher) -> None:
    flaky = Flaky()
    flaky.error = OSError("disk on fire")
    flaky.beacon.interval_ms = 20
    runner = Runner([counting("fast", 20), counting("slow", 60_000), flaky.beacon], publisher, subject="web1")
    stop = StopSignal()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(publisher.named("fast")) >= 5, timeout_s=10, message="5 runs of the fast beacon")
        wait_until(lambda: len(flaky.seen_states) >= 5, timeout_s=10, message="the failing beacon to be retried")
        wait_until(lambda: publisher.named("slow"), timeout_s=10, message="the slow beacon's first run")
    finally:
        stop.set()
        thread.join(10)
        stop.close()
    assert not thread.is_alive()
    runs = [e.metrics["run"] for e in publisher.named("fast")]
    assert runs == sorted(runs) and runs[0] == 1.0     # one beacon, one state, in order
    assert len(publisher.named("slow")) == 1           # ran at start, next due in a minute
    assert failures(publisher) == [(2, "failing")]     # retried every interval, reported once


def test_stop_signal_wakes_a_long_sleep() -> None:
    stop = StopSignal()
    runner = Runner([counting("slow", 3_600_000)], CollectingPublisher(), subject="web1")
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: runner.events_published == 1, timeout_s=10, message="the first run")
    stop.set()
    stop.set()  # idempotent
    thread.join(10)
    assert not thread.is_alive()
    stop.close()


def test_close_calls_beacon_close_hooks_and_survives_their_errors(publisher: CollectingPublisher) -> None:
    closed = []

    def bad_close() -> None:
        raise RuntimeError("already closed")

    beacons = [Beacon("a", 1000, counting().check, close=bad_close),
               Beacon("b", 1000, counting().check, close=lambda: closed.append("b"))]
    Runner(beacons, publisher, subject="web1").close()
    assert closed == ["b"]
