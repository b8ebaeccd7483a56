"""Agent tests written once and run twice: on the in-memory AgentHarness (unit suite) and on the
KafkaHarness with a real broker (integration suite). Each takes a harness factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.runtime.agent import AgentRegistry, agent
from app.runtime.tables import Table

MakeHarness = Callable[..., Any]


def ev(subject: str = "h1", name: str = "load", time: int = 1_000, **metrics: float) -> dict:
    return {"subject": subject, "name": name, "time": time, "metrics": metrics, "severity": 0}


def scenario_table_sums_survive_restart(make: MakeHarness) -> None:
    reg = AgentRegistry()
    totals = Table("totals", default=0.0)

    @agent("events", tables=[totals], registry=reg)
    def add(event, ctx):
        totals[ctx.key] += event["metrics"]["x"]
        ctx.send("totals-out", ctx.key, {"total": totals[ctx.key]})

    h = make(reg.agents(), partitions=2, output_topics=("totals-out",))
    h.feed_many("events", [ev("a", x=1.5), ev("b", x=1.0), ev("a", x=2.0)])
    h.restart()
    h.feed("events", ev("a", x=0.5))
    assert totals.lookup("a/load") == 4.0 and totals.lookup("b/load") == 1.0
    assert sorted(o.value["total"] for o in h.outputs("totals-out") if o.key == "a/load") == [1.5, 3.5, 4.0]


def scenario_poison_record_goes_to_dead_letters(make: MakeHarness) -> None:
    reg = AgentRegistry()

    @agent("events", registry=reg)
    def picky(event, ctx):
        if event["subject"] == "bad":
            raise ValueError("no bad subjects")
        ctx.send("ok-out", ctx.key, {"subject": event["subject"]})

    h = make(reg.agents(), output_topics=("ok-out",))
    h.feed_many("events", [ev("a"), ev("bad"), ev("b")])
    assert [o.value["subject"] for o in h.outputs("ok-out")] == ["a", "b"]
    (dead,) = h.dead_letters
    assert dead.agent == "picky" and "ValueError: no bad subjects" in dead.error and dead.offset == 1


def scenario_wall_clock_timer_fires_once_when_silent(make: MakeHarness) -> None:
    reg = AgentRegistry()

    @agent("events", registry=reg)
    def watch(event, ctx):
        ctx.timers.schedule(ctx.key, ctx.now_ms() + 2_000, kind="wall", payload={"id": event["subject"]})

    @watch.on_timer
    def silent(key, payload, ctx):
        ctx.send("silent-out", key, {"key": key, "payload": payload})

    h = make(reg.agents(), output_topics=("silent-out",), wall_clock_ms=1_000_000)
    h.feed("events", ev(time=1_000_000))
    assert h.advance_wall_clock(1_000) == 0
    h.feed("events", ev(time=1_001_000))      # re-arms
    assert h.advance_wall_clock(1_500) == 0
    assert h.advance_wall_clock(1_000) == 1
    assert h.advance_wall_clock(5_000) == 0
    assert [o.value for o in h.outputs("silent-out")] == [{"key": "h1/load", "payload": {"id": "h1"}}]


SCENARIOS = [scenario_table_sums_survive_restart, scenario_poison_record_goes_to_dead_letters,
             scenario_wall_clock_timer_fires_once_when_silent]
