"""The metric sinks in a worker on the real Kafka: events in -> the pipeline closes windows (on
`metrics`) -> the sinks stage delivers them to Prometheus exposition (the worker's /metrics),
remote-write, Graphite and OTLP destinations on loopback. Faults: a destination down (batches
wait on disk, then drain), answering 500 (retried) or 400 (dropped, counted), and one that hangs
(the worker goes on: the other sinks and the exposition still get new windows).

One worker (pipeline + sinks, 1-s windows, no grace) serves the module; each test has its own
subjects. The destinations decode with the protocols' reference decoders (destinations.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.bus.clients import make_admin
from app.config import Settings
from app.runtime.stage import Stage, combine
from app.runtime.worker import Worker, WorkerOptions
from app.sdk import Emitter
from app.sinks.config import sinks_on
from app.stages import build_stages
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port, wait_until
from tests.integration.runtime.kafka_helpers import worker_thread
from tests.integration.sinks.destinations import GraphiteListener, HttpDestination, otlp_samples, remote_write_samples

S = 1000
#: Fast retries, small batches leaving soon: the tests wait on conditions, never on these.
DELIVERY = {"batch_delay": "100ms", "retry_initial": "100ms", "retry_max": "500ms", "timeout": "30s"}


@dataclass
class Live:
    settings: Settings
    worker: Worker
    url: str
    emitter: Emitter
    remote_write: HttpDestination
    otlp: HttpDestination
    graphite: GraphiteListener
    #: event time after every event sent so far: with no grace, an event behind its partition's
    #: event-time watermark would be late (not counted in any window)
    next_t0_ms: int = 0

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def counter(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)

    def emit_windows(self, subject: str) -> list[tuple[int, float]]:
        """Events of `subject` 400 ms apart (load1 = 0, 1, 2, ...) over 2.8 s that close two 1-s
        windows: [(window start ms, mean)] of those."""
        t0 = max((int(time.time() * 1000) // S - 20) * S, self.next_t0_ms)
        self.next_t0_ms = t0 + 4 * S
        for i in range(8):
            self.emitter.emit(subject=subject, name="load", kind="METRIC", time=t0 + i * 400,
                              metrics={"load1": float(i)})
        return [(t0, 1.0), (t0 + S, 3.5)]


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix = f"sk{uuid.uuid4().hex[:8]}-"
    remote_write = HttpDestination(remote_write_samples).start()
    otlp = HttpDestination(otlp_samples).start()
    graphite = GraphiteListener().start()
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": tmp_path_factory.mktemp("sinks-state"),
                                    "pipeline": {"window_sizes": ["1s"], "grace": 0, "close_spread": 0}})
    s = sinks_on(s, prometheus={}, remote_write={"url": f"{remote_write.url}/api/v1/write", **DELIVERY},
                 otlp={"endpoint": otlp.url, **DELIVERY},
                 graphite={"address": f"127.0.0.1:{graphite.port}", **DELIVERY})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    parts = combine(build_stages(s, ["pipeline", "sinks"]))
    port = free_port()
    options = WorkerOptions(app_id=f"sk-{uuid.uuid4().hex[:6]}", instance_id="w1", commit_interval_ms=200,
                            http_port=port)
    try:
        with worker_thread(s, Stage("test", parts.agents, parts.routes, parts.collectors), options) as worker:
            wait_until(lambda: len(worker.engine.assigned()) == 12, timeout_s=60,
                       message="events and metrics partitions assigned")
            emitter = Emitter(s)
            yield Live(s, worker, f"http://127.0.0.1:{port}", emitter, remote_write, otlp, graphite)
            emitter.close()
    finally:
        parts.close()
        for destination in (remote_write, otlp, graphite):
            destination.stop()


def _means(samples, name: str) -> set[tuple[int, float]]:
    return {(ts, value) for series, _, value, ts in samples if series == name}


def test_events_in__windows_closed__every_sink_delivers_them(live: Live) -> None:
    subject = _unique("web")
    expected = live.emit_windows(subject)
    ends = {(start + S, mean) for start, mean in expected}
    wait_until(lambda: _means(live.remote_write.of(subject), "vigil_window_mean") == ends, timeout_s=60,
               message="both windows at the remote-write destination")
    [(_, labels, _, _)] = [s for s in live.remote_write.of(subject) if s[0] == "vigil_window_mean"][:1]
    assert labels == {"subject": subject, "name": "load", "metric": "load1", "window": "1s"}
    wait_until(lambda: _means(live.otlp.of(subject), "vigil.window.mean") == ends, timeout_s=60,
               message="both windows at the OTLP destination")
    wait_until(lambda: {(ts * S, v) for path, v, ts in live.graphite.of(subject) if path.endswith(".mean")} ==
               set(expected), timeout_s=60, message="both windows at the Graphite listener")
    assert {path for path, _, _ in live.graphite.of(subject)} >= {
        f"vigil.{subject}.load.load1.1s.{agg}" for agg in ("count", "sum", "min", "max", "mean", "last")}
    # the exposition shows the latest closed window
    series = ("vigil_window_mean", tuple(sorted({"subject": subject, "name": "load", "metric": "load1",
                                                 "window": "1s"}.items())))
    assert wait_until(lambda: live.scrape().get(series) == 3.5, timeout_s=30, message="exposition")
    assert live.counter("vigil_sink_samples_sent_total", sink="remote_write") > 0


def test_destination_down__windows_wait_on_disk_then_arrive_when_it_is_back(live: Live) -> None:
    subject = _unique("down")
    live.remote_write.stop()
    try:
        expected = live.emit_windows(subject)
        wait_until(lambda: live.counter("vigil_sink_buffered_bytes", sink="remote_write") > 0, timeout_s=60,
                   message="the batches buffered on disk")
        failures = live.counter("vigil_sink_send_failures_total", sink="remote_write")
        wait_until(lambda: live.counter("vigil_sink_send_failures_total", sink="remote_write") > failures,
                   timeout_s=30, message="a retry that failed again")
        assert live.remote_write.of(subject) == []
    finally:
        live.remote_write.start()
    wait_until(lambda: _means(live.remote_write.of(subject), "vigil_window_mean") ==
               {(start + S, mean) for start, mean in expected}, timeout_s=60, message="the buffer drained")
    wait_until(lambda: live.counter("vigil_sink_buffered_bytes", sink="remote_write") == 0, timeout_s=30,
               message="an empty buffer")


def test_answering_500__retried_until_accepted(live: Live) -> None:
    subject = _unique("five")
    live.otlp.status = 503
    try:
        expected = live.emit_windows(subject)
        requests = live.otlp.requests
        wait_until(lambda: live.otlp.requests >= requests + 3, timeout_s=60, message="retries of the 503s")
        assert live.otlp.of(subject) == []
    finally:
        live.otlp.status = 200
    wait_until(lambda: _means(live.otlp.of(subject), "vigil.window.mean") ==
               {(start + S, mean) for start, mean in expected}, timeout_s=60, message="accepted after the 503s")


def test_answering_400__dropped_and_counted_later_windows_still_delivered(live: Live) -> None:
    refused, later = _unique("bad"), _unique("good")
    dropped = live.counter("vigil_sink_dropped_samples_total", sink="remote_write", reason="rejected")
    live.remote_write.status = 400
    try:
        live.emit_windows(refused)
        wait_until(lambda: live.counter("vigil_sink_dropped_samples_total", sink="remote_write",
                                        reason="rejected") >= dropped + 2 * 9, timeout_s=60,
                   message="the refused windows counted as rejected")
    finally:
        live.remote_write.status = 200
    expected = live.emit_windows(later)
    wait_until(lambda: _means(live.remote_write.of(later), "vigil_window_mean") ==
               {(start + S, mean) for start, mean in expected}, timeout_s=60, message="later windows delivered")
    assert live.remote_write.of(refused) == []


def test_a_hanging_destination_never_holds_the_worker_up(live: Live) -> None:
    first, second = _unique("hang"), _unique("after")
    live.remote_write.answering.clear()
    try:
        expected_first = live.emit_windows(first)
        # the remote-write sender is stuck in its request; the pipeline, the exposition and the
        # other sinks go on, for these windows and for the ones of events sent after them
        wait_until(lambda: {(ts * S, v) for p, v, ts in live.graphite.of(first) if p.endswith(".mean")} ==
                   set(expected_first), timeout_s=60, message="Graphite got the first windows")
        expected_second = live.emit_windows(second)
        wait_until(lambda: _means(live.otlp.of(second), "vigil.window.mean") ==
                   {(start + S, mean) for start, mean in expected_second}, timeout_s=60,
                   message="OTLP got the later windows while remote-write hangs")
        series = ("vigil_window_mean", tuple(sorted({"subject": second, "name": "load", "metric": "load1",
                                                     "window": "1s"}.items())))
        wait_until(lambda: live.scrape().get(series) == 3.5, timeout_s=30, message="the exposition moved on")
        assert live.remote_write.of(second) == []
    finally:
        live.remote_write.answering.set()
    wait_until(lambda: _means(live.remote_write.of(second), "vigil_window_mean") ==
               {(start + S, mean) for start, mean in expected_second}, timeout_s=90,
               message="remote-write catches up once the destination answers")
