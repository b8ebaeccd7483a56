"""The metric sinks in a worker on the real Kafka: events in -> the pipeline closes windows (on
`metrics`) -> the sinks stage delivers them to Prometheus exposition (the worker's /metrics),
remote-write, Graphite and OTLP destinations on loopback. Faults: a destination down (batches
wait on disk, then drain), answering 500 (retried) or 400 (dropped, counted), and one that hangs
(the worker goes on: the other sinks and the exposition still get new windows).

One worker (pipeline + sinks, 1-s windows, no grace) serves the module; each test has its own
subjects. The destinations decode with the protocols' reference decoders (destinations.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.integration.sinks.conftest import DELIVERY, S, SinksWorker, unique
from tests.integration.sinks.destinations import GraphiteListener, HttpDestination, otlp_samples, remote_write_samples


@dataclass
class Live:
    """The module's worker and the destinations its push sinks send to."""

    sinks: SinksWorker
    remote_write: HttpDestination
    otlp: HttpDestination
    graphite: GraphiteListener

    def emit_windows(self, subject: str) -> list[tuple[int, float]]:
        return self.sinks.emit_windows(subject)

    def scrape(self) -> dict[Any, float]:
        return self.sinks.scrape()

    def counter(self, name: str, **labels: str) -> float:
        return self.sinks.counter(name, **labels)


@pytest.fixture(scope="module")
def live(sinks_worker) -> Iterator[Live]:
    remote_write = HttpDestination(remote_write_samples).start()
    otlp = HttpDestination(otlp_samples).start()
    graphite = GraphiteListener().start()
    try:
        with sinks_worker(prometheus={}, remote_write={"url": f"{remote_write.url}/api/v1/write", **DELIVERY},
                          otlp={"endpoint": otlp.url, **DELIVERY},
                          graphite={"address": f"127.0.0.1:{graphite.port}", **DELIVERY}) as worker:
            yield Live(worker, remote_write, otlp, graphite)
    finally:
        for destination in (remote_write, otlp, graphite):
            destination.stop()


def _means(samples, name: str) -> set[tuple[int, float]]:
    return {(ts, value) for series, _, value, ts in samples if series == name}


def test_events_in__windows_closed__every_sink_delivers_them(live: Live) -> None:
    subject = unique("web")
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
    wait_until(lambda: live.counter("vigil_sink_samples_sent_total", sink="remote_write") > 0, timeout_s=30,
               message="the samples counted as sent (the sender process reports every 100 ms)")


def test_destination_down__windows_wait_on_disk_then_arrive_when_it_is_back(live: Live) -> None:
    subject = unique("down")
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
    subject = unique("five")
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
    refused, later = unique("bad"), unique("good")
    dropped = live.counter("vigil_sink_dropped_samples_total", sink="remote_write", reason="rejected")
    live.remote_write.status = 400
    try:
        refused_windows = live.emit_windows(refused)
        wait_until(lambda: live.counter("vigil_sink_dropped_samples_total", sink="remote_write",
                                        reason="rejected") >= dropped + 2 * 9, timeout_s=60,
                   message="the refused windows counted as rejected")
    finally:
        live.remote_write.status = 200
    expected = live.emit_windows(later)
    wait_until(lambda: _means(live.remote_write.of(later), "vigil_window_mean") ==
               {(start + S, mean) for start, mean in expected}, timeout_s=60, message="later windows delivered")
    # the refused subject's third window (its last event's) closes when the later events move the
    # partition's stream time on, so it may arrive now, with a 200; the two refused ones never do
    refused_ends = {start + S for start, _ in refused_windows}
    assert [s for s in live.remote_write.of(refused) if s[3] in refused_ends] == []


def test_a_hanging_destination_never_holds_the_worker_up(live: Live) -> None:
    first, second = unique("hang"), unique("after")
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
