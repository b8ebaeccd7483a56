"""The sinks stage on the agent API, in the AgentHarness: the pipeline's own closed-window records
(from a pipeline agent in a harness) fed to the sinks agent reach the exposition and a Graphite
listener on loopback; records that are not windows are skipped and counted."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from app.config import load_settings
from app.pipeline.agents import build_pipeline
from app.pipeline.config import PipelineConfig
from app.runtime.testing import AgentHarness
from app.sinks.config import SinksConfig, sinks_on
from app.sinks.stage import SinksStage
from app.stages import build_stages
from tests.conftest import wait_until

S = 1000


def _closed_windows(now_ms: int) -> list[dict]:
    """WindowAggregate records a pipeline with 1-s windows publishes for two identities."""
    harness = AgentHarness([build_pipeline(PipelineConfig.model_validate(
        {"window_sizes": ["1s"], "grace": 0, "close_spread": 0})).agent], wall_clock_ms=now_ms)
    events = [{"id": f"e{i}", "time": now_ms - 10 * S + i * 300, "subject": subject, "name": "load", "kind": "METRIC",
               "severity": 0, "origin": "test", "text": "", "tags": {}, "metrics": {"load1": float(i)}, "ttl": None,
               "extended": None, "trace_id": None} for i in range(10) for subject in ("web1", "web2")]
    harness.feed_many("events", events)
    return [o.value for o in harness.outputs("metrics")]


def test_no_sink_enabled__the_stage_has_no_agent() -> None:
    [stage] = build_stages(load_settings(), ["sinks"])
    assert stage.name == "sinks" and stage.agents == []
    stage.close()


@pytest.mark.parametrize("senders", ["process", "thread"])
def test_closed_windows_reach_the_exposition_and_graphite(tmp_path: Path, senders: str) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(chunk)

    threading.Thread(target=serve, daemon=True).start()
    settings = sinks_on(load_settings(state_dir=tmp_path), prometheus={},
                        graphite={"address": f"127.0.0.1:{server.getsockname()[1]}", "batch_delay": "50ms"})
    settings = settings.model_copy(update={"sinks": {**settings.sinks, "senders": senders}})
    sinks = SinksStage(SinksConfig.from_settings(settings), state_dir=tmp_path)
    stage = sinks.stage()
    now_ms = int(time.time() * 1000)
    records = _closed_windows(now_ms)
    assert records
    harness = AgentHarness(stage.agents, wall_clock_ms=now_ms)
    harness.feed_many("metrics", [*records, {"not": "a window"}], key="web1/load",
                      type_name="vigil.WindowAggregate")
    harness.feed("metrics", {"subject": "x"}, key="x", type_name="vigil.Alert")
    assert sinks.skipped == 2 and not harness.dead_letters

    exposition = generate_latest(sinks.metrics.registry).decode()
    assert 'vigil_window_mean{metric="load1",name="load",subject="web2",window="1s"}' in exposition
    lines = wait_until(lambda: b"".join(received).decode().splitlines() if sum(map(len, received)) and
                       len(b"".join(received).splitlines()) >= 9 * len(records) else None,
                       timeout_s=20, message="every window's lines at the listener")
    starts = {r["window_start"] // 1000 for r in records if r["subject"] == "web1"}
    assert {int(line.split()[2]) for line in lines if line.startswith("vigil.web1.load.load1.1s.mean ")} == starts
    stage.close()
    server.close()
    assert sinks.metrics.registry.get_sample_value("vigil_sink_samples_sent_total", {"sink": "graphite"}) == \
        9 * len(records)
