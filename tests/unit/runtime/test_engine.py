"""Harness-level tests of the runtime: tables, windows, timers, failures (no Kafka)."""

from __future__ import annotations

import asyncio

import pytest

from app.runtime.agent import AgentRegistry, agent
from app.runtime.backends import MemoryBackend
from app.runtime.engine import Engine, InRecord
from app.runtime.tables import Table, TableNotActive
from app.runtime.testing import AgentHarness
from app.runtime.windowed import WindowedTable
from app.runtime.windows import Window, windows_for


def ev(subject: str = "h1", name: str = "load", time: int = 1_000, **metrics: float) -> dict:
    return {"subject": subject, "name": name, "time": time, "metrics": metrics, "severity": 0}


@pytest.fixture
def reg() -> AgentRegistry:
    return AgentRegistry()


def test_table__counts_per_key_across_partitions(reg: AgentRegistry) -> None:
    counts = Table("counts", default=0)

    @agent("events", tables=[counts], registry=reg)
    def count(event, ctx):
        counts[ctx.key] += 1

    h = AgentHarness(reg.agents(), partitions=4)
    h.feed_many("events", [ev("a"), ev("b"), ev("a"), ev("c"), ev("a")])
    assert counts.lookup("a/load") == 3
    assert counts.lookup("b/load") == 1
    assert sorted(k for k, _ in counts.all_items()) == ["a/load", "b/load", "c/load"]


def test_table__survives_restart(reg: AgentRegistry) -> None:
    totals = Table("totals", default=0.0)

    @agent("events", tables=[totals], registry=reg)
    def add(event, ctx):
        totals[ctx.key] += event["metrics"]["x"]

    h = AgentHarness(reg.agents(), partitions=2)
    h.feed_many("events", [ev("a", x=1.5), ev("a", x=2.0)])
    h.restart()
    h.feed("events", ev("a", x=0.5))
    assert totals.lookup("a/load") == 4.0


def test_local_only_table__emptied_and_refilled_by_on_rebuild(reg: AgentRegistry) -> None:
    latest = Table("latest")
    by_time = Table("by-time", changelog=False)  # derived from `latest`: no changelog needed

    @agent("events", tables=[latest, by_time], registry=reg)
    def track(event, ctx):
        latest[ctx.key] = event["time"]
        by_time[str(event["time"])] = ctx.key

    @track.on_rebuild
    def rebuild(ctx):
        for key, time_ms in latest.items():
            by_time[str(time_ms)] = key

    h = AgentHarness(reg.agents(), partitions=2)
    h.feed_many("events", [ev("a", time=1), ev("b", time=2), ev("a", time=3)])
    assert sorted(by_time.all_items()) == [("1", "a/load"), ("2", "b/load"), ("3", "a/load")]
    for p in range(2):
        h.engine.rebuild("events", p)
    # the stale entry ("1") is gone: rebuilt from `latest` alone, outside any agent call
    assert sorted(by_time.all_items()) == [("2", "b/load"), ("3", "a/load")]
    assert latest.active is None and by_time.active is None


def test_on_close__runs_on_the_engine_loop_before_it_closes(reg: AgentRegistry) -> None:
    """What an agent's calls left open on the engine's loop (kept HTTP connections) is closed there."""
    seen: list[tuple[str, bool]] = []

    @agent("events", registry=reg)
    async def handle(event, ctx):
        seen.append(("call", False))

    @handle.on_close
    async def close():
        seen.append(("close", asyncio.get_running_loop().is_closed()))

    @agent("other", registry=reg)
    def broken(event, ctx):
        pass

    @broken.on_close
    def fail():
        raise RuntimeError("closing failed")

    h = AgentHarness(reg.agents(), partitions=1)
    h.feed_many("events", [ev("a", time=1)])
    loop = h.engine.loop
    h.engine.close()
    assert seen == [("call", False), ("close", False)], "once, on the open loop (a failing one does not stop it)"
    assert loop.is_closed()


def test_table__outside_agent_raises_clear_error() -> None:
    t = Table("lonely")
    with pytest.raises(TableNotActive, match="outside an agent"):
        t["x"] = 1


def test_agent_error__goes_to_dead_letters_and_rolls_back_only_that_record(reg: AgentRegistry) -> None:
    seen = Table("seen", default=0)

    @agent("events", tables=[seen], registry=reg)
    def picky(event, ctx):
        seen[ctx.key] += 1
        ctx.send("out", ctx.key, event["subject"])
        if event["subject"] == "bad":
            raise ValueError("no bad subjects")

    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev("a"), ev("bad"), ev("b")])
    assert [d.agent for d in h.dead_letters] == ["picky"]
    assert "ValueError: no bad subjects" in h.dead_letters[0].error
    assert h.dead_letters[0].offset == 1
    assert seen.lookup("bad/load") is None
    assert seen.lookup("a/load") == 1 and seen.lookup("b/load") == 1
    assert [o.value for o in h.outputs("out")] == ["a", "b"]


def test_batch_agent__receives_lists_and_isolates_poison(reg: AgentRegistry) -> None:
    sizes: list[int] = []

    @agent("events", batch=True, registry=reg)
    def batcher(events, ctx):
        if any(e["subject"] == "bad" for e in events):
            raise RuntimeError("poison")
        sizes.append(len(events))

    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev("a"), ev("b"), ev("c")])
    h.feed_many("events", [ev("d"), ev("bad"), ev("e")])
    assert sizes == [3, 1, 1]
    assert len(h.dead_letters) == 1


def test_async_agent__works(reg: AgentRegistry) -> None:
    got = Table("got", default=0)

    @agent("events", tables=[got], registry=reg)
    async def slow(event, ctx):
        got[ctx.key] += 1

    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev("a"), ev("a")])
    assert got.lookup("a/load") == 2


@pytest.mark.parametrize(("ts", "size", "step", "expected"), [
    (0, 10, None, [(0, 10)]),
    (9, 10, None, [(0, 10)]),
    (10, 10, None, [(10, 20)]),
    (12, 10, 5, [(5, 15), (10, 20)]),
    (15, 10, 5, [(10, 20), (15, 25)]),
    (12_500, 10_000, 3_000, [(3_000, 13_000), (6_000, 16_000), (9_000, 19_000), (12_000, 22_000)]),
])
def test_windows_for__boundaries_and_hopping_overlap(ts, size, step, expected) -> None:
    assert windows_for(ts, size_ms=size, step_ms=step) == [Window(s, e) for s, e in expected]


def test_windows_for__rejects_step_larger_than_size() -> None:
    with pytest.raises(ValueError, match="step"):
        windows_for(0, size_ms=10, step_ms=20)


def _window_agent(reg: AgentRegistry, **kw):
    closed: list[tuple[str, Window, float]] = []
    sums = WindowedTable("sums", default=0.0, **kw)

    @agent("events", tables=[sums], registry=reg)
    def summer(event, ctx):
        sums.apply(ctx.key, lambda s: s + event["metrics"]["x"])

    @sums.on_close
    def on_close(key, window, value, ctx):
        closed.append((key, window, value))
        ctx.send("closed", key, {"start": window.start_ms, "sum": value})

    return sums, closed


def test_windowed__tumbling_close_on_watermark_with_grace(reg: AgentRegistry) -> None:
    sums, closed = _window_agent(reg, size=10_000, grace=2_000)
    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev(time=1_000, x=1), ev(time=9_999, x=2), ev(time=10_000, x=5)])
    assert closed == []  # watermark 10s < end 10s + grace 2s
    h.feed("events", ev(time=11_000, x=1))   # watermark 11s
    h.feed("events", ev(time=9_000, x=1))    # out of order but within grace: merged into [0,10s)
    h.feed("events", ev(time=12_000, x=1))   # watermark reaches 12s: [0,10s) closes
    assert closed == [("h1/load", Window(0, 10_000), 4.0)]
    assert sums.windows("h1/load") == [(Window(10_000, 20_000), 7.0)]


def test_windowed__late_past_grace_is_counted_and_dropped(reg: AgentRegistry) -> None:
    sums, closed = _window_agent(reg, size=10_000, grace=1_000)
    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev(time=1_000, x=1), ev(time=25_000, x=1)])
    h.feed("events", ev(time=5_000, x=100))
    assert sums.late_dropped == 1
    assert closed[0][2] == 1.0


def test_windowed__hopping_event_counts_in_every_overlapping_window(reg: AgentRegistry) -> None:
    sums, _closed = _window_agent(reg, size=10_000, step=5_000)
    h = AgentHarness(reg.agents())
    h.feed("events", ev(time=12_000, x=1))
    assert [w for w, _ in sums.windows("h1/load")] == [Window(5_000, 15_000), Window(10_000, 20_000)]


def test_windowed__retention_keeps_closed_windows_then_expires(reg: AgentRegistry) -> None:
    sums, closed = _window_agent(reg, size=10_000, retention=20_000)
    h = AgentHarness(reg.agents())
    h.feed_many("events", [ev(time=1_000, x=1), ev(time=10_000, x=1)])
    assert len(closed) == 1
    assert [w.start_ms for w, _ in sums.windows("h1/load")] == [0, 10_000]
    h.feed("events", ev(time=30_000, x=1))  # [0,10s) expires at 10s + 20s
    assert [w.start_ms for w, _ in sums.windows("h1/load")] == [10_000, 30_000]


def test_windowed__open_windows_survive_restart_and_close_once(reg: AgentRegistry) -> None:
    _sums, closed = _window_agent(reg, size=10_000)
    h = AgentHarness(reg.agents())
    h.feed("events", ev(time=1_000, x=3))
    h.restart()
    h.feed("events", ev(time=10_500, x=1))
    h.restart()
    h.feed("events", ev(time=11_000, x=1))
    assert closed == [("h1/load", Window(0, 10_000), 3.0)]


def _absence_agent(reg: AgentRegistry, kind: str):
    @agent("events", registry=reg)
    def watch(event, ctx):
        ctx.timers.schedule(ctx.key, ctx.timestamp + 2_000, kind=kind, payload={"id": event["subject"]})

    @watch.on_timer
    def silent(key, payload, ctx):
        ctx.send("alerts", key, {"expired": key, "payload": payload, "at": ctx.timestamp})

    return watch


def test_timers__wall_clock_fires_once_when_silent(reg: AgentRegistry) -> None:
    _absence_agent(reg, "wall")
    h = AgentHarness(reg.agents(), wall_clock_ms=0)
    h.feed("events", ev(time=0))
    h.advance_wall_clock(1_000)
    h.feed("events", ev(time=1_000))        # re-arms: now due at 3_000
    assert h.advance_wall_clock(1_500) == 0   # t=2_500
    assert h.advance_wall_clock(600) == 1     # t=3_100
    assert h.advance_wall_clock(10_000) == 0
    assert [o.value["at"] for o in h.outputs("alerts")] == [3_000]


def test_timers__event_time_fires_on_watermark(reg: AgentRegistry) -> None:
    _absence_agent(reg, "event")
    h = AgentHarness(reg.agents())
    h.feed("events", ev("a", time=0))
    h.feed("events", ev("b", time=1_000))
    h.feed("events", ev("b", time=2_500))   # watermark 2.5s: a (due 2s) fires, b re-armed
    assert [o.key for o in h.outputs("alerts")] == ["a/load"]


def test_timers__survive_restart(reg: AgentRegistry) -> None:
    _absence_agent(reg, "wall")
    h = AgentHarness(reg.agents(), wall_clock_ms=0)
    h.feed("events", ev(time=0))
    h.restart()
    assert h.advance_wall_clock(2_500) == 1
    assert h.outputs("alerts")[0].value["payload"] == {"id": "h1"}


def test_timers__failing_timer_is_dead_lettered_not_retried_forever(reg: AgentRegistry) -> None:
    @agent("events", registry=reg)
    def arm(event, ctx):
        ctx.timers.schedule("k", 10, kind="wall")

    @arm.on_timer
    def boom(key, payload, ctx):
        raise RuntimeError("timer broke")

    h = AgentHarness(reg.agents())
    h.feed("events", ev())
    h.advance_wall_clock(100)
    h.advance_wall_clock(100)
    assert len(h.dead_letters) == 1 and "timer broke" in h.dead_letters[0].error


def test_tables_shared_across_topics__rejected(reg: AgentRegistry) -> None:
    shared = Table("shared")

    @agent("a", tables=[shared], registry=reg)
    def one(event, ctx):
        pass

    @agent("b", tables=[shared], registry=reg)
    def two(event, ctx):
        pass

    with pytest.raises(ValueError, match="partitioned like one source topic"):
        AgentHarness(reg.agents())


def test_checkpoint__persists_state_written_so_far(reg: AgentRegistry) -> None:
    ledger = Table("ledger")

    @agent("actions", tables=[ledger], registry=reg)
    def run(action, ctx):
        ledger[action["id"]] = "started"
        ctx.checkpoint()
        ledger[action["id"]] = "finished"

    h = AgentHarness(reg.agents())
    h.feed("actions", {"id": "a1"}, key="t")
    assert h.checkpoints == 1
    assert ledger.lookup("a1") == "finished"


def test_checkpoint__a_failure_after_it_drops_only_what_followed(reg: AgentRegistry) -> None:
    """Outputs and writes before ctx.checkpoint() are durable; a later failure rolls back only what
    came after it, even when other agents' outputs were waiting in the engine before the call."""
    ledger = Table("ledger")

    @agent("actions", registry=reg)
    def first(action, ctx):
        ctx.send("log", None, f"first saw {action['id']}")

    @agent("actions", tables=[ledger], registry=reg)
    def second(action, ctx):
        ledger[action["id"]] = "started"
        ctx.send("log", None, "started")
        ctx.checkpoint()
        ledger[action["id"]] = "finished"
        ctx.send("log", None, "finished")
        raise RuntimeError("side effect failed")

    produced: list[str] = []
    engine = Engine(reg.agents(), backend_factory=lambda table, partition: MemoryBackend(), clock=lambda: 0,
                    checkpoint=lambda: produced.extend(o.value for o in engine.take_outputs()))
    engine.open_partition("actions", 0)
    engine.activate("actions", 0)
    engine.process("actions", 0, [InRecord("t", {"id": "a1"}, 0, 0)])
    produced += [o.value for o in engine.take_outputs()]
    # the batch run and the one-record re-run each got as far as the checkpoint
    assert produced == ["first saw a1", "started", "started"]
    assert ledger.partition(0).get("a1") == "started"
    assert [d.agent for d in engine.take_dead_letters()] == ["second"]
    engine.close()
