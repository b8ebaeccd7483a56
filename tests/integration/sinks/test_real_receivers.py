"""The metric sinks against the real receivers (tests/integration/receivers.py): Prometheus
(remote-write receiver, and scraping the worker's /metrics), carbon-cache and the OpenTelemetry
Collector. Events in -> the pipeline closes 1-s windows -> each receiver stores what the sink sent,
read back through the receiver's own API or storage. A receiver that could not be built skips its
test with the reason."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port, wait_until
from tests.integration.receivers import (
    PROMETHEUS,
    GraphiteReceiver,
    OtlpReceiver,
    PrometheusReceiver,
    require_installed,
    start_prometheus,
)
from tests.integration.sinks.conftest import DELIVERY, S, unique


def test_remote_write__prometheus_stores_every_window(sinks_worker, prometheus_receiver: PrometheusReceiver) -> None:
    subject = unique("rw")
    with sinks_worker(remote_write={"url": prometheus_receiver.remote_write_url, **DELIVERY}) as worker:
        expected = worker.emit_windows(subject)

        def stored() -> list[tuple[float, float]]:
            result = prometheus_receiver.query(f'vigil_window_mean{{subject="{subject}"}}[5m]')
            return [(float(t), float(v)) for series in result for t, v in series["values"]]

        wait_until(lambda: stored() == [((start + S) / S, mean) for start, mean in expected], timeout_s=60,
                   message="both windows in Prometheus")
        [series] = prometheus_receiver.series(f'{{subject="{subject}",__name__="vigil_window_p99"}}')
        assert series == {"__name__": "vigil_window_p99", "subject": subject, "name": "load", "metric": "load1",
                          "window": "1s"}
        # the sinks' counters reach the worker's /metrics with the sender process's next report
        wait_until(lambda: worker.counter("vigil_sink_samples_sent_total", sink="remote_write") >= 2 * 9,
                   timeout_s=30, message="the samples counted as sent")
        assert worker.counter("vigil_sink_dropped_samples_total", sink="remote_write", reason="rejected") == 0


def test_remote_write__prometheus_down__batches_kept_on_disk_across_a_restart_then_stored(
        sinks_worker, tmp_path: Path) -> None:
    require_installed(PROMETHEUS, "prometheus")
    subject, port = unique("late"), free_port()
    remote_write = {"url": f"http://127.0.0.1:{port}/api/v1/write", **DELIVERY}
    with sinks_worker(remote_write=remote_write) as first:  # nothing listens on the port yet
        expected = first.emit_windows(subject)
        wait_until(lambda: first.counter("vigil_sink_buffered_bytes", sink="remote_write") > 0, timeout_s=60,
                   message="batches buffered while Prometheus is down")
    buffered = sorted((first.settings.state_dir / "sinks" / "remote_write").glob("*.batch"))
    assert buffered, "the stopped worker left its batches on disk"
    with start_prometheus(tmp_path, port=port) as prometheus, sinks_worker(restart_of=first,
                                                                           remote_write=remote_write) as again:

        def stored() -> list[tuple[float, float]]:
            result = prometheus.query(f'vigil_window_mean{{subject="{subject}"}}[5m]')
            return [(float(t), float(v)) for series in result for t, v in series["values"]]

        wait_until(lambda: stored() == [((start + S) / S, mean) for start, mean in expected], timeout_s=60,
                   message="the buffered windows in Prometheus after the restart")
        wait_until(lambda: again.counter("vigil_sink_buffered_bytes", sink="remote_write") == 0, timeout_s=30,
                   message="the buffer drained")
        # the restarted worker resumed after the windows it had read: they came from the disk buffer
        assert again.counter("vigil_sink_retries_total", sink="remote_write") >= 1
        assert not list((first.settings.state_dir / "sinks" / "remote_write").glob("*.batch"))


def test_exposition__prometheus_scrapes_the_latest_windows(sinks_worker,
                                                           prometheus_receiver: PrometheusReceiver) -> None:
    subject = unique("ex")
    with sinks_worker(prometheus={}) as worker, prometheus_receiver.scrape(f"{worker.url}/metrics") as job:
        worker.emit_windows(subject)

        def scraped() -> list[float]:
            result = prometheus_receiver.query(f'vigil_window_mean{{subject="{subject}",job="{job}"}}')
            return [float(r["value"][1]) for r in result]

        wait_until(lambda: scraped() == [3.5], timeout_s=60, message="the latest window scraped")
        result = prometheus_receiver.query(f'vigil_window_count{{subject="{subject}",job="{job}"}}')
        assert [(r["metric"]["window"], float(r["value"][1])) for r in result] == [("1s", 2.0)]


def test_graphite__carbon_stores_every_window_under_its_path(sinks_worker,
                                                             graphite_receiver: GraphiteReceiver) -> None:
    subject = unique("gr")
    address = f"{graphite_receiver.host}:{graphite_receiver.port}"
    with sinks_worker(graphite={"address": address, **DELIVERY}) as worker:
        expected = worker.emit_windows(subject)
        path = f"vigil.{subject}.load.load1.1s.mean"
        wait_until(lambda: graphite_receiver.datapoints(path) == [(start // S, mean) for start, mean in expected],
                   timeout_s=60, message=f"both windows in carbon under {path}")
        assert graphite_receiver.datapoints(f"vigil.{subject}.load.load1.1s.count") == \
            [(start // S, count) for (start, _), count in zip(expected, (3.0, 2.0), strict=True)]


def test_otlp__the_collector_receives_gauges_and_delta_sums(sinks_worker, otlp_receiver: OtlpReceiver) -> None:
    subject = unique("ot")
    with sinks_worker(otlp={"endpoint": otlp_receiver.endpoint, "service_name": "vigil-test", **DELIVERY}) as worker:
        expected = worker.emit_windows(subject)

        def points(name: str) -> list[dict]:
            return sorted((p for p in otlp_receiver.metrics() if p["name"] == name
                           and p["attributes"].get("subject") == subject), key=lambda p: p["time_unix_nano"])

        wait_until(lambda: [(p["time_unix_nano"], p["value"]) for p in points("vigil.window.mean")] ==
                   [((start + S) * 1_000_000, mean) for start, mean in expected], timeout_s=60,
                   message="both windows at the collector")
        [first, _] = points("vigil.window.mean")
        assert first["type"] == "gauge" and first["start_time_unix_nano"] == expected[0][0] * 1_000_000
        assert first["attributes"] == {"subject": subject, "name": "load", "metric": "load1", "window": "1s"}
        assert first["resource"] == {"service.name": "vigil-test"} and first["scope"] == "vigil.sinks"
        counts = points("vigil.window.count")
        assert [(p["type"], p["is_monotonic"], p["value"]) for p in counts] == [("sum", True, 3.0), ("sum", True, 2.0)]
        assert {p["temporality"] for p in counts} in ({1}, {"AGGREGATION_TEMPORALITY_DELTA"})
