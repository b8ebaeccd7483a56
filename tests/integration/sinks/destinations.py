"""Destinations for the sinks' integration tests on loopback, decoding what arrives with each
protocol's reference decoder (snappy + the WriteRequest message class, the ExportMetricsService-
Request message class, the Graphite line format split as carbon splits it), and answering as the
test tells them: accept, refuse (a status), hang until released, or be down (port closed).

They stand in for the real receivers (tests/integration/receivers.py, when it can build them)
where a test needs to steer the destination's answers: real receivers cannot be made to answer
500 or to hang on cue."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from app.sinks.prompb.remote_pb2 import WriteRequest

__all__ = ["GraphiteListener", "HttpDestination", "Sample", "otlp_samples", "remote_write_samples"]

#: (series or metric name, labels/attributes, value, timestamp ms)
Sample = tuple[str, dict[str, str], float, int]


def remote_write_samples(body: bytes, headers: dict[str, str]) -> list[Sample]:
    """A remote-write request as samples; checks the protocol's headers."""
    assert headers.get("content-encoding") == "snappy", headers
    assert headers.get("x-prometheus-remote-write-version") == "0.1.0", headers
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    out = []
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        name = labels.pop("__name__")
        out += [(name, labels, s.value, s.timestamp) for s in series.samples]
    return out


def otlp_samples(body: bytes, headers: dict[str, str]) -> list[Sample]:
    """An OTLP ExportMetricsServiceRequest as samples (time: the point's time, in ms)."""
    assert headers.get("content-type") == "application/x-protobuf", headers
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    out = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = metric.gauge.data_points if metric.WhichOneof("data") == "gauge" else metric.sum.data_points
                for p in points:
                    attributes = {kv.key: kv.value.string_value for kv in p.attributes}
                    out.append((metric.name, attributes, p.as_double, p.time_unix_nano // 1_000_000))
    return out


class HttpDestination:
    """An HTTP endpoint on a fixed loopback port. `status`: the answer (200 by default);
    `answering` cleared: requests wait until it is set; `stop()`/`start()`: down and up on the
    same port (HTTP/1.0: one connection per request, so nothing stays connected while down)."""

    def __init__(self, decode: Callable[[bytes, dict[str, str]], list[Sample]]) -> None:
        self.decode = decode
        self.samples: list[Sample] = []
        self.requests = 0
        self.status = 200
        #: cleared: requests hang until it is set again (a destination that takes forever)
        self.answering = threading.Event()
        self.answering.set()
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpDestination:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.answering.wait()
                with owner._lock:
                    owner.requests += 1
                    status = owner.status
                    if status == 200:
                        owner.samples += owner.decode(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, subject: str) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s[1].get("subject") == subject]


class GraphiteListener:
    """A carbon-like plaintext listener on a fixed loopback port: `lines` as (path, value, ts s)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, float, int]] = []
        self.port = _free_port()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> GraphiteListener:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    path, value, ts = raw.decode().split()
                    with owner._lock:
                        owner.lines.append((path, float(value), int(ts)))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, node: str) -> list[tuple[str, float, int]]:
        with self._lock:
            return [line for line in self.lines if f".{node}." in line[0]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
