"""Operating a worker: health and Prometheus metrics over HTTP, graceful SIGTERM."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import httpx

from app.config import Settings
from app.runtime.agent import AgentRegistry, agent
from app.runtime.tables import Table
from app.runtime.windowed import WindowedTable
from app.runtime.worker import WorkerOptions
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import group_lag, produce_events, read_topic, spawn_worker, worker_thread
from tests.integration.runtime.test_worker import PLUGIN, make_events, reference_totals


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{want}}} not in /metrics")


def test_http__healthz_and_metrics_show_flow_lag_late_and_dead_letters(settings: Settings, new_topic,
                                                                      tmp_path: Path) -> None:
    source, out = new_topic("src", partitions=2), new_topic("out")
    reg = AgentRegistry()
    sums = Table("sums", default=0.0)
    late = WindowedTable("win", size=1_000, grace=0, default=0)

    @agent(source, tables=[sums, late], dlq_topic=new_topic("dlq"), registry=reg)
    def summer(event, ctx):
        if event["text"] == "poison":
            raise ValueError("bad")
        late.apply(ctx.key, lambda n: n + 1)
        sums[ctx.key] += event["metrics"]["x"]
        ctx.send(out, ctx.key, {"total": sums[ctx.key]})

    events = make_events(200, 5)
    events[100] = events[100].model_copy(update={"text": "poison"})
    events[150] = events[150].model_copy(update={"time": 1})  # far behind the watermark: late
    opts = WorkerOptions(app_id=f"app-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=100, http_port=0)
    with worker_thread(settings.model_copy(update={"state_dir": tmp_path}), reg.agents(), opts) as w:
        wait_until(lambda: w.http is not None and w.wait_started(1), message="http server")
        base = f"http://127.0.0.1:{w.http.port}"
        wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, message="healthy")
        produce_events(settings, source, events)
        wait_until(lambda: w.engine.stats["summer"].events_in >= 200, message="all processed")
        read_topic(settings, out, expect=199)
        health = httpx.get(f"{base}/healthz").json()
        assert health["ok"] is True and sorted(health["assigned"]) == [f"{source}[0]", f"{source}[1]"]

        def metrics() -> str:
            return httpx.get(f"{base}/metrics").text

        wait_until(lambda: _metric(metrics(), "vigil_agent_events_in_total", agent="summer") >= 200,
                   message="events_in exported")
        text = metrics()
        assert _metric(text, "vigil_agent_events_out_total", topic=out) == 199
        assert _metric(text, "vigil_dead_letters_total", agent="summer", stage="agent") == 1
        assert _metric(text, "vigil_late_events_dropped", table="win") == 1
        assert _metric(text, "vigil_assigned_partitions") == 2
        wait_until(lambda: f'vigil_consumer_lag{{partition="0",topic="{source}"}} 0.0' in metrics(),
                   message="lag per partition exported (refreshed every 5 s)")
        assert httpx.get(f"{base}/nope").status_code == 404


def test_sigterm__finishes_commits_and_exits_cleanly(settings: Settings, new_topic, tmp_path: Path) -> None:
    source, out = new_topic("src", partitions=2), new_topic("out", partitions=2)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    events = make_events(3_000, 30)
    produce_events(settings, source, events)
    proc = spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id="t", state_dir=tmp_path / "s",
                        env={"VIGIL_TEST_SOURCE": source, "VIGIL_TEST_OUT": out}, log_path=tmp_path / "w.log")
    try:
        wait_until(lambda: group_lag(settings, app_id, source) < len(events), timeout_s=60, message="started")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "w.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Everything it consumed was committed together with its outputs: a new worker continues exactly.
    processed = len(events) - group_lag(settings, app_id, source)
    outputs = read_topic(settings, out, expect=processed)
    assert len(outputs) == processed
    proc = spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id="t", state_dir=tmp_path / "s",
                        env={"VIGIL_TEST_SOURCE": source, "VIGIL_TEST_OUT": out})
    try:
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=90, message="rest processed")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    final = {}
    import orjson

    for m in read_topic(settings, out, expect=len(events)):
        v = orjson.loads(m.value())
        final[v["key"]] = v["total"]
    assert final == {k: v[-1] for k, v in reference_totals(events).items()}


def test_failure__an_error_while_shutting_down_does_not_hide_the_one_that_stopped_the_loop(
        settings: Settings, new_topic, tmp_path: Path, monkeypatch) -> None:
    """The loop fails (here: an agent's checkpoint cannot commit); shutting down then fails too (the
    consumer cannot leave the group). What the caller sees is the first failure, and nothing of the
    failed loop was committed."""
    from app.runtime.engine import CheckpointFailed
    from app.runtime.worker import Worker

    source = new_topic("src", partitions=1)
    reg = AgentRegistry()

    @agent(source, registry=reg)
    def boom(event: object, ctx) -> None:
        raise CheckpointFailed("checkpoint failed: the first failure")

    produce_events(settings, source, make_events(1, 1))
    worker = Worker(settings.model_copy(update={"state_dir": tmp_path}), reg.agents(),
                    WorkerOptions(app_id=f"fail-{uuid.uuid4().hex[:6]}", instance_id="f1"))
    closed: list[str] = []

    def failing_close() -> None:
        closed.append("tried")
        raise RuntimeError("the shutdown failure")

    real_start = worker.start

    def start() -> None:
        real_start()
        assert worker.consumer is not None
        real_close = worker.consumer.close
        monkeypatch.setattr(worker, "consumer", _Closing(worker.consumer, real_close, failing_close))

    monkeypatch.setattr(worker, "start", start)
    try:
        worker.run()
    except CheckpointFailed as exc:
        assert "the first failure" in str(exc)
    else:
        raise AssertionError("the loop's failure was not raised")
    assert closed == ["tried"]
    assert group_lag(settings, worker.app_id, source) == 1, "nothing of the failed loop was committed"


class _Closing:
    """A consumer whose close() fails after closing the real one (so no client is left open)."""

    def __init__(self, consumer, real_close, fail) -> None:
        self._consumer, self._real_close, self._fail = consumer, real_close, fail

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)

    def close(self) -> None:
        self._real_close()
        self._fail()
