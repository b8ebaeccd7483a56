"""The stream runtime on the real Kafka: restore, DLQ, rebalance, SIGKILL under exactly-once."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from app.config import Settings
from app.model.events import Event
from app.runtime.agent import AgentRegistry, agent
from app.runtime.tables import Table
from app.runtime.worker import WorkerOptions
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import (
    group_lag,
    json_values,
    produce_events,
    produce_raw,
    read_topic,
    spawn_worker,
    stop_worker,
    worker_thread,
)

PLUGIN = "tests.integration.runtime.sum_plugin"


def make_events(n: int, keys: int, *, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    return [Event(subject=f"h{rng.randrange(keys)}", name="m", time=1_000_000 + i,
                  metrics={"x": float(rng.randint(1, 9))}) for i in range(n)]


def reference_totals(events: list[Event]) -> dict[str, list[float]]:
    """Running total per key, in order: what an exact run must output."""
    running: dict[str, float] = {}
    out: dict[str, list[float]] = {}
    for ev in events:
        running[ev.key] = running.get(ev.key, 0.0) + ev.metrics["x"]
        out.setdefault(ev.key, []).append(running[ev.key])
    return out


def _sum_agents(source: str, out: str) -> tuple[AgentRegistry, Table]:
    reg = AgentRegistry()
    sums = Table("sums", default=0.0)

    @agent(source, name="summer", tables=[sums], registry=reg)
    def summer(event, ctx):
        if event.get("text") == "poison":
            raise ValueError("poison event")
        sums[ctx.key] += event["metrics"]["x"]
        ctx.send(out, ctx.key, {"key": ctx.key, "total": sums[ctx.key]})

    return reg, sums


@pytest.mark.parametrize("sliced", [False, True], ids=["whole-commits", "commits-in-slices"])
def test_restart__restores_only_missing_state_then_everything_after_wipe(settings: Settings, new_topic,
                                                                            tmp_path: Path, sliced: bool,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if sliced:  # every commit point is encoded, produced and written one key per loop turn
        import app.runtime.worker.commits as worker_commits
        import app.runtime.worker.loop as worker_loop

        monkeypatch.setattr(worker_loop, "COMMIT_SLICE_S", 0.0)
        monkeypatch.setattr(worker_commits, "_SLICE_CHECK_EVERY", 1)
        monkeypatch.setattr(worker_commits, "_PERSIST_CHUNK", 1)
    source, out = new_topic("src", partitions=3), new_topic("out", partitions=3)
    events = make_events(600, 20)
    produce_events(settings, source, events)
    expected = {k: v[-1] for k, v in reference_totals(events).items()}
    s = settings.model_copy(update={"state_dir": tmp_path / "state"})
    opts = WorkerOptions(app_id=f"app-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200)

    reg, sums = _sum_agents(source, out)
    with worker_thread(s, reg.agents(), opts) as w:
        wait_until(lambda: w.engine.stats["summer"].events_in >= 600, message="600 events processed")
    # Local state kept: a restart reads nothing from the changelog.
    reg, sums = _sum_agents(source, out)
    with worker_thread(s, reg.agents(), opts) as w:
        wait_until(lambda: len(w.engine.assigned()) == 3, message="assignment")
        assert {k: sums.lookup(k) for k in expected} == expected
        restored = sum(v for m in w.metrics.restored.collect() for v in [s.value for s in m.samples
                                                                         if s.name.endswith("_total")])
        assert restored == 0
    # Local state lost: everything comes back from the changelogs.
    import shutil

    shutil.rmtree(tmp_path / "state")
    reg, sums = _sum_agents(source, out)
    with worker_thread(s, reg.agents(), opts) as w:
        wait_until(lambda: len(w.engine.assigned()) == 3, message="assignment")
        assert {k: sums.lookup(k) for k in expected} == expected


def test_bad_input__decode_failures_and_agent_errors_go_to_dlq_with_headers(settings: Settings, new_topic,
                                                                            tmp_path: Path) -> None:
    source, out, dlq = new_topic("src"), new_topic("out"), new_topic("dlq")
    good = make_events(10, 3)
    produce_events(settings, source, good[:5])
    produce_raw(settings, source, [(b"k1", b"\x00\x00\x00\x00\x63garbage"), (b"k2", b"not avro at all"), (b"k3", None)])
    produce_events(settings, source, [Event(subject="p", name="m", text="poison", metrics={"x": 1.0})])
    produce_events(settings, source, good[5:])
    reg = AgentRegistry()
    sums = Table("sums", default=0.0)

    @agent(source, name="summer", tables=[sums], dlq_topic=dlq, registry=reg)
    def summer(event, ctx):
        if event.get("text") == "poison":
            raise ValueError("poison event")
        sums[ctx.key] += event["metrics"]["x"]
        ctx.send(out, ctx.key, {"total": sums[ctx.key]})

    opts = WorkerOptions(app_id=f"app-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200)
    with worker_thread(settings.model_copy(update={"state_dir": tmp_path}), reg.agents(), opts):
        dead = read_topic(settings, dlq, expect=4)
        outputs = read_topic(settings, out, expect=10)
    assert len(outputs) == 10
    headers = [dict(m.headers()) for m in dead]
    assert [h["vigil.agent"] for h in headers] == [b"(decode)"] * 3 + [b"summer"]
    assert b"unknown schema id 99" in headers[0]["vigil.error"]
    assert b"wrong magic byte" in headers[1]["vigil.error"]
    assert b"ValueError: poison event" in headers[3]["vigil.error"]
    assert {h["vigil.topic"] for h in headers} == {source.encode()}
    assert [int(h["vigil.offset"]) for h in headers] == [5, 6, 7, 8]
    assert {h["vigil.group"] for h in headers} == {opts.app_id.encode()}
    assert dead[1].value() == b"not avro at all"


def _final_totals(msgs) -> dict[str, float]:
    last: dict[str, float] = {}
    for v in json_values(msgs):
        last[v["key"]] = v["total"]
    return last


def test_rebalance__two_workers_split_partitions_and_lose_nothing(settings: Settings, new_topic,
                                                                  tmp_path: Path) -> None:
    source, out = new_topic("src", partitions=4), new_topic("out", partitions=4)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    env = {"VIGIL_TEST_SOURCE": source, "VIGIL_TEST_OUT": out}
    first, second = make_events(2_000, 40, seed=1), make_events(2_000, 40, seed=2)
    a = b = None
    a = spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id="a", state_dir=tmp_path / "a", env=env,
                     log_path=tmp_path / "a.log")
    try:
        produce_events(settings, source, first)
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=90, message="worker a caught up")
        b = spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id="b", state_dir=tmp_path / "b",
                         env=env, log_path=tmp_path / "b.log")
        produce_events(settings, source, second)
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=90, message="both caught up")
        stop_worker(a)
        produce_events(settings, source, second[:500])
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=90, message="b took over")
    finally:
        for proc in (a, b):
            if proc is not None:
                stop_worker(proc)
    everything = first + second + second[:500]
    expected = {k: v[-1] for k, v in reference_totals(everything).items()}
    assert _final_totals(read_topic(settings, out, expect=len(everything))) == expected


@pytest.mark.timeout(600)
def test_exactly_once__sigkill_and_restart_gives_identical_state_and_outputs(settings: Settings, new_topic,
                                                                             tmp_path: Path) -> None:
    source, out = new_topic("src", partitions=3), new_topic("out", partitions=3)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    env = {"VIGIL_TEST_SOURCE": source, "VIGIL_TEST_OUT": out}
    events = make_events(60_000, 50, seed=3)
    chunks = [events[i:i + 10_000] for i in range(0, len(events), 10_000)]
    rng = random.Random(11)
    log = tmp_path / "worker.log"
    procs = []

    def spawn():
        procs.append(spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id="eos",
                                  state_dir=tmp_path / "s", guarantee="exactly_once", env=env, log_path=log))
        return procs[-1]

    try:
        for chunk in chunks:  # each round: new input, a fresh worker, a SIGKILL at a random moment of its work
            produce_events(settings, source, chunk)
            proc = spawn()
            lag_before = group_lag(settings, app_id, source)
            wait_until(lambda lb=lag_before, p=proc: group_lag(settings, app_id, source) < lb or p.poll() is not None,
                       timeout_s=120, message="the worker started on the new chunk")
            time.sleep(rng.uniform(0.0, 0.3))  # picks the kill moment; not a synchronisation
            stop_worker(proc, kill=True)
        proc = spawn()
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=180, message="backlog done")
    finally:
        for p in procs:
            stop_worker(p)
    msgs = read_topic(settings, out, expect=len(events), timeout_s=120, committed_only=True)
    got: dict[str, list[float]] = {}
    for v in json_values(msgs):
        got.setdefault(v["key"], []).append(v["total"])
    assert got == reference_totals(events), f"see {log}"
