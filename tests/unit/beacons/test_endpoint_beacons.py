"""tcp and http: a real listening socket and a real HTTP server opened, changed and closed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.beacons.base import Beacon, Reading, Thresholds
from app.beacons.builtin import BuildEnv
from app.beacons.builtin._endpoint import ProbeResult, endpoint_reading
from app.beacons.builtin.http import build as build_http
from app.beacons.builtin.tcp import build as build_tcp
from app.beacons.config import HttpConfig, TcpConfig
from app.model.events import Event, Kind, Severity
from tests.conftest import free_port


class Watch:
    def __init__(self, beacon: Beacon, make_ctx) -> None:
        self.beacon, self.make_ctx, self.state = beacon, make_ctx, None

    def run(self) -> list[Event]:
        events, self.state = self.beacon.check(self.make_ctx(self.beacon.name), self.state)
        return events

    def statuses(self) -> list[tuple[str, str, int]]:
        return [(e.name, e.tags["state"], e.severity) for e in self.run() if e.kind == Kind.STATUS]


# -- pure ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("result", "previous", "state", "severity"), [
    (ProbeResult(5.0), None, "up", 0),
    (ProbeResult(150.0), None, "slow:warning", 1),
    (ProbeResult(600.0), None, "slow:critical", 2),
    (ProbeResult(95.0), Severity.WARNING, "slow:warning", 1),  # hysteresis: not yet below 100 - 10
    (ProbeResult(80.0), Severity.WARNING, "up", 0),
    (ProbeResult(3.0, error="ConnectionRefusedError: refused"), None, "down", 2),
    (ProbeResult(3.0, status_code=503, bad_status=True), None, "status:503", 2),
])
def test_endpoint_reading(result: ProbeResult, previous: Severity | None, state: str, severity: int) -> None:
    thresholds = Thresholds(warning=100, critical=500, hysteresis=10)
    before = {"tcp:x": Reading("?", previous)} if previous is not None else None
    reading = endpoint_reading("tcp:x", "x", result, thresholds, before, tags={})
    assert (reading.state, reading.severity) == (state, severity)
    assert reading.metrics["up"] == (0.0 if result.error or result.bad_status else 1.0)


# -- tcp ----------------------------------------------------------------------------------------------
def test_tcp__listening_socket_opened_and_closed(make_ctx) -> None:
    port = free_port()
    (beacon,) = build_tcp(TcpConfig(checks=[f"127.0.0.1:{port}"]), BuildEnv(systemctl=None))
    watch = Watch(beacon, make_ctx)
    name = f"tcp:127.0.0.1:{port}"
    assert watch.statuses() == [(name, "down", 2)]

    listener = socket.create_server(("127.0.0.1", port))
    try:
        events = watch.run()
        assert [(e.name, e.tags["state"], e.severity) for e in events if e.kind == Kind.STATUS] == [(name, "up", 0)]
        (sample,) = [e for e in events if e.kind == Kind.METRIC]
        assert sample.metrics["up"] == 1.0 and sample.metrics["latency_ms"] >= 0
        assert sample.tags["port"] == str(port)
        assert watch.statuses() == []  # still up: samples only
    finally:
        listener.close()
    (down,) = [e for e in watch.run() if e.kind == Kind.STATUS]
    assert (down.tags["state"], down.tags["previous"]) == ("down", "up")
    assert "refused" in down.text.lower()


# -- http ---------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_http__status_changes_and_server_gone(http_server, make_ctx) -> None:
    server, handler = http_server
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    (beacon,) = build_http(HttpConfig(checks=[{"url": url, "name": "api", "timeout": "2s"}]),
                           BuildEnv(systemctl=None))
    watch = Watch(beacon, make_ctx)
    try:
        events = watch.run()
        assert [(e.name, e.tags["state"], e.severity) for e in events if e.kind == Kind.STATUS] == [
            ("http:api", "up", 0)]
        (sample,) = [e for e in events if e.kind == Kind.METRIC]
        assert sample.metrics["status_code"] == 200.0 and sample.tags["url"] == url

        handler.status = 503
        assert watch.statuses() == [("http:api", "status:503", 2)]
        handler.status = 301  # a redirect is an answer: up by default, and not followed
        assert watch.statuses() == [("http:api", "up", 0)]

        server.shutdown()
        server.server_close()
        (down,) = [e for e in watch.run() if e.kind == Kind.STATUS]
        assert (down.tags["state"], down.severity) == ("down", 2) and "ConnectError" in down.text
    finally:
        beacon.close()


def test_http__expected_codes_are_configurable(http_server, make_ctx) -> None:
    server, handler = http_server
    handler.status = 401
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (beacon,) = build_http(HttpConfig(checks=[{"url": url, "expect": [401]}]), BuildEnv(systemctl=None))
    try:
        assert Watch(beacon, make_ctx).statuses() == [(f"http:{url}", "up", 0)]
    finally:
        beacon.close()


def test_nothing_configured_means_no_beacon() -> None:
    assert build_http(HttpConfig(), BuildEnv(systemctl=None)) == []
    assert build_tcp(TcpConfig(), BuildEnv(systemctl=None)) == []
