"""`vigil status / metrics / events find / events get` against real worker HTTP APIs (the routes of
pipelines run in the harness), merging the answers of several workers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from app.cli import CliContext
from app.pipeline.agents import build_pipeline
from app.pipeline.cli import events_find_command, events_get_command, metrics_command, status_command
from app.pipeline.routes import pipeline_routes
from app.runtime.http import HttpApi
from app.runtime.testing import AgentHarness
from tests.conftest import free_port
from tests.unit.pipeline.conftest import NOW_MS


def _event(subject: str, severity: int, at_s: float, *, id: str, metrics: dict[str, float] | None = None) -> dict:
    return {"id": id, "time": NOW_MS + int(at_s * 1000), "subject": subject, "name": "load", "kind": "METRIC",
            "severity": severity, "origin": "t", "text": f"sev {severity}", "tags": {}, "metrics": metrics or {},
            "ttl": None, "extended": None, "trace_id": None}


@pytest.fixture
def worker() -> Iterator[Callable[[list[dict]], str]]:
    """Factory: a worker HTTP API serving a harness pipeline fed with `events`; returns its URL."""
    servers: list[HttpApi] = []

    def start(events: list[dict]) -> str:
        pipeline = build_pipeline()
        harness = AgentHarness([pipeline.agent], partitions=2, wall_clock_ms=NOW_MS + 60_000)
        harness.feed_many("events", events)
        api = HttpApi("127.0.0.1", free_port(), CollectorRegistry(), lambda: (True, {}), lock=threading.RLock())
        for path, handler in pipeline_routes(pipeline).items():
            api.route(path, handler)
        api.start()
        servers.append(api)
        return f"http://127.0.0.1:{api.port}"

    yield start
    for api in servers:
        api.stop()


def _run(command, args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(command, args, obj=CliContext())
    return result.exit_code, result.stdout, result.stderr


def test_status__merges_workers_and_keeps_the_fresher_answer(worker) -> None:
    a = worker([_event("web1", 2, 0, id="a1"), _event("db1", 0, 0, id="a2")])
    b = worker([_event("web2", 1, 0, id="b1"), _event("web1", 0, 5, id="b2")])  # web1 moved here, newer
    code, out, _ = _run(status_command, ["--json", "--worker", a, "--worker", b])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["subject"], r["state"], r["last_event_id"]) for r in rows] == \
        [("db1", "OK", "a2"), ("web1", "OK", "b2"), ("web2", "WARNING", "b1")]
    code, out, _ = _run(status_command, ["web*", "--state", "warning", "--worker", a, "--worker", b])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["STATE", "SUBJECT", "NAME", "SINCE", "LAST", "SEEN", "EVENTS", "TEXT"]
    assert lines[1].split()[:3] == ["WARNING", "web2", "load"] and len(lines) == 2


def test_status__unreachable_workers_are_named(worker, monkeypatch: pytest.MonkeyPatch) -> None:
    up = worker([_event("web1", 0, 0, id="a1")])
    down = f"http://127.0.0.1:{free_port()}"
    code, out, err = _run(status_command, ["--worker", down, "--worker", up])
    assert code == 0 and "web1" in out
    assert f"cannot reach the worker at {down}" in err and "missing" in err
    monkeypatch.setenv("VIGIL_WORKER_URL", down)
    code, _, err = _run(status_command, [])
    assert code == 1 and f"cannot reach the worker at {down}" in err and "vigil worker" in err
    code, _, err = _run(status_command, ["--worker", "ftp://x"])
    assert code == 2 and "http(s) URL" in err


def test_metrics__table_and_json(worker) -> None:
    url = worker([_event("web1", 0, i, id=f"m{i}", metrics={"load1": float(i), "load5": 1.0}) for i in range(3)])
    code, out, _ = _run(metrics_command, ["web1", "load", "--metric", "load1", "--window", "10s", "--json",
                                          "--worker", url])
    assert code == 0
    [window] = [json.loads(line) for line in out.splitlines()]
    assert (window["count"], window["sum"], window["size_ms"], window["closed"]) == (3, 3.0, 10_000, False)
    code, out, _ = _run(metrics_command, ["web1", "load", "--worker", url])
    assert code == 0 and len(out.splitlines()) == 1 + 4  # header + 2 metrics x 2 sizes
    code, _, err = _run(metrics_command, ["web1", "load", "--window", "7s", "--worker", url])
    assert code == 1 and "configured window sizes are 10s, 1m" in err


def test_events_find__newest_first_across_workers(worker) -> None:
    a = worker([_event("web1", 0, -30, id="x1"), _event("web1", 0, -10, id="x3")])
    b = worker([_event("web2", 0, -20, id="x2")])
    code, out, _ = _run(events_find_command, ["--subject", "web*", "--since", "3650d", "--json", "--worker", a,
                                              "--worker", b])
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["x3", "x2", "x1"]
    code, out, _ = _run(events_find_command, ["--subject", "web1", "--since", "3650d", "--limit", "1", "--worker", a])
    assert code == 0 and "x3" in out and "x1" not in out


def test_events_get__unknown_id_names_the_partitions_searched(worker) -> None:
    url = worker([_event("web1", 0, 0, id="known")])
    code, _, err = _run(events_get_command, ["unknown", "--worker", url])
    assert code == 1 and "event unknown is not in the archive index (partitions searched: 0, 1)" in err
