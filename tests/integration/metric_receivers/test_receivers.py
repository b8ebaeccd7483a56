"""The real metric receivers (tests/integration/receivers.py) work: each is sent data by its own
protocol from a well-kept client (or the protocol's documented line format) and gives it back.

- Prometheus scrapes prometheus_client's exposition, and a second Prometheus sends what it scraped
  to the first by remote-write (Prometheus is the reference remote-write client).
- carbon-cache takes Graphite's plaintext protocol, `<path> <value> <unix seconds>\\n` per line as
  documented in Graphite's "Feeding In Your Data", and stores it in whisper files.
- The OpenTelemetry Collector takes what the OpenTelemetry Python SDK's OTLP/HTTP exporter sends.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.conftest import free_port, wait_until
from tests.integration.receivers import (
    OTELCOL,
    GraphiteReceiver,
    OtlpReceiver,
    PrometheusReceiver,
    require_installed,
    start_otelcol,
    start_prometheus,
)


@contextmanager
def exposition(metric: str, value: float, case: str) -> Iterator[str]:
    """prometheus_client serving one gauge on a free loopback port; yields the /metrics URL."""
    registry = CollectorRegistry()
    Gauge(metric, "receiver smoke test", ["case"], registry=registry).labels(case=case).set(value)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_prometheus_scrapes_a_url(prometheus_receiver: PrometheusReceiver) -> None:
    case = uuid.uuid4().hex[:8]
    # The token is what a worker with an API token asks for; prometheus_client ignores it.
    with (exposition("vigil_receiver_smoke_scraped", 42.5, case) as url,
          prometheus_receiver.scrape(url, bearer_token="smoke-token") as job):
        result = wait_until(lambda: prometheus_receiver.query(f'vigil_receiver_smoke_scraped{{case="{case}"}}'),
                            message=f"Prometheus to scrape {url}")
    assert [(r["metric"]["job"], r["metric"]["instance"], float(r["value"][1])) for r in result] == \
        [(job, url.split("/")[2], 42.5)]
    # Out of the config again once the block is left.
    assert job not in {t["labels"]["job"] for t in prometheus_receiver.targets()}


def test_prometheus_receives_remote_write(prometheus_receiver: PrometheusReceiver, tmp_path: Path) -> None:
    case = uuid.uuid4().hex[:8]
    with (exposition("vigil_receiver_smoke_written", 7.0, case) as url,
          start_prometheus(tmp_path, remote_write=(prometheus_receiver.remote_write_url,)) as sender,
          sender.scrape(url) as job):
        selector = f'vigil_receiver_smoke_written{{case="{case}"}}'
        result = wait_until(lambda: prometheus_receiver.query(selector), timeout_s=60,
                            message="the sender's samples to arrive by remote-write")
    assert [float(r["value"][1]) for r in result] == [7.0]
    [series] = prometheus_receiver.series(selector)
    assert series == {"__name__": "vigil_receiver_smoke_written", "case": case, "job": job,
                      "instance": url.split("/")[2]}


def test_graphite_stores_plaintext_lines(graphite_receiver: GraphiteReceiver) -> None:
    path = f"vigil.smoke.{uuid.uuid4().hex[:8]}.load"
    now_s = int(time.time())
    lines = f"{path} 1.5 {now_s - 2}\n{path} 2.25 {now_s - 1}\n"
    with socket.create_connection((graphite_receiver.host, graphite_receiver.port), timeout=10) as conn:
        conn.sendall(lines.encode())
    def stored() -> list[tuple[int, float]]:
        points = graphite_receiver.datapoints(path)
        return points if len(points) == 2 else []

    points = wait_until(stored, message=f"carbon to store {path}")
    assert points == [(now_s - 2, 1.5), (now_s - 1, 2.25)]
    assert graphite_receiver.datapoints("vigil.smoke.never.sent") == []


def test_graphite_stores_tagged_series(graphite_receiver: GraphiteReceiver) -> None:
    """Graphite 1.1's tagged form, `name;tag=value;...`: carbon sorts the tags."""
    name = f"vigil.smoke.{uuid.uuid4().hex[:8]}.load"
    now_s = int(time.time())
    with socket.create_connection((graphite_receiver.host, graphite_receiver.port), timeout=10) as conn:
        conn.sendall(f"{name};host=web-1.example;dc=a 3.5 {now_s}\n".encode())
    path = f"{name};dc=a;host=web-1.example"
    assert wait_until(lambda: graphite_receiver.datapoints(path), message=f"carbon to store {path}") == [(now_s, 3.5)]
    assert path in graphite_receiver.stored_paths()


def send_with_sdk(endpoint: str, case: str) -> None:
    """The OpenTelemetry Python SDK's OTLP/HTTP exporter sends a counter (3) and a gauge (0.75)."""
    exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10)
    # Exported on force_flush below, not on a timer.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "vigil-smoke"}))
    try:
        meter = provider.get_meter("vigil.smoke")
        meter.create_counter("vigil.smoke.events", unit="1").add(3, {"case": case, "host": "web-1"})
        meter.create_gauge("vigil.smoke.load").set(0.75, {"case": case})
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()


def test_otlp_receives_the_sdk_exporter(otlp_receiver: OtlpReceiver) -> None:
    case = uuid.uuid4().hex[:8]
    before_ns = time.time_ns()
    send_with_sdk(otlp_receiver.endpoint, case)

    def received() -> list[dict]:
        return [p for p in otlp_receiver.metrics() if p["attributes"].get("case") == case]

    # force_flush exports once, and shutdown once more (the same cumulative values): the first of each.
    points = wait_until(lambda: len(received()) >= 2 and received(), message="the collector to write the points")
    by_name: dict[str, dict] = {}
    for point in points:
        by_name.setdefault(point["name"], point)
    assert set(by_name) == {"vigil.smoke.events", "vigil.smoke.load"}
    events, load = by_name["vigil.smoke.events"], by_name["vigil.smoke.load"]
    assert (events["type"], events["value"], events["is_monotonic"], events["unit"]) == ("sum", 3, True, "1")
    assert events["attributes"] == {"case": case, "host": "web-1"}
    assert (load["type"], load["value"]) == ("gauge", 0.75)
    assert events["resource"]["service.name"] == "vigil-smoke"
    assert events["scope"] == "vigil.smoke"
    assert before_ns <= events["time_unix_nano"] <= time.time_ns()


def test_a_receiver_restarts_on_its_port_keeping_what_it_had(tmp_path: Path) -> None:
    """How a test takes a destination down and back up (here the collector; all three alike)."""
    require_installed(OTELCOL, "otelcol")
    first, second = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    with start_otelcol(tmp_path) as receiver:
        send_with_sdk(receiver.endpoint, first)
        wait_until(lambda: any(p["attributes"].get("case") == first for p in receiver.metrics()),
                   message="the first points")
    with start_otelcol(tmp_path, port=int(receiver.endpoint.rsplit(":", 1)[1])) as again:
        assert again.endpoint == receiver.endpoint
        send_with_sdk(again.endpoint, second)
        wait_until(lambda: any(p["attributes"].get("case") == second for p in again.metrics()),
                   message="the second points")
        assert {first, second} <= {p["attributes"].get("case") for p in again.metrics()}
