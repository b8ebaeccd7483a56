"""Graphite: path templates, the plaintext lines, and the TCP transport against a loopback listener."""

from __future__ import annotations

import socket
import threading

import pytest

from app.sinks.graphite import GraphiteEncoder, GraphiteTransport, PathTemplate, graphite_node
from app.sinks.types import SendFailed
from tests.unit.sinks.conftest import window


@pytest.mark.parametrize(("text", "node"), [
    ("web1", "web1"), ("web1.example.com", "web1_example_com"), ("disk:/var log", "disk_var_log"),
    ("a..b", "a_b"), ("", "_"), ("ok-name_1", "ok-name_1")])
def test_graphite_node__one_node_whatever_the_text(text: str, node: str) -> None:
    assert graphite_node(text) == node


def test_path_template__fills_every_field_sanitised() -> None:
    template = PathTemplate("servers.{subject}.{name}.{metric}.{window}.{aggregate}")
    w = window("db1.example.com", "disk:/", "used pct", size_ms=60_000)
    assert template.path(w, "p95") == "servers.db1_example_com.disk_.used_pct.1m.p95"


@pytest.mark.parametrize("bad", ["vigil.{host}.{metric}", "vigil.{subject!r}", "vigil.{subject:>5}", "vigil.{"])
def test_path_template__unknown_or_formatted_fields_are_refused_with_the_choices(bad: str) -> None:
    with pytest.raises(ValueError, match="path template"):
        PathTemplate(bad)


def test_encode__a_line_per_aggregate_at_the_window_start_in_seconds() -> None:
    encoder = GraphiteEncoder(PathTemplate("v.{subject}.{metric}.{window}.{aggregate}"))
    payload = encoder.encode([window("web1", start_ms=1_700_000_000_500, value=0.25)])
    lines = payload.body.decode().splitlines()
    assert payload.samples == len(lines) == 9
    assert lines[0] == "v.web1.load1.10s.count 3.0 1700000000"
    assert lines[4] == "v.web1.load1.10s.mean 0.25 1700000000"
    assert all(len(line.split(" ")) == 3 for line in lines)


def _listener() -> tuple[socket.socket, list[bytes], threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, received, thread


def test_transport__sends_over_one_connection_and_reconnects_after_an_error() -> None:
    server, received, thread = _listener()
    port = server.getsockname()[1]
    transport = GraphiteTransport("127.0.0.1", port, timeout_s=5)
    try:
        transport.send(b"a 1 1\n")
        transport.send(b"b 2 1\n")
    finally:
        transport.close()
        thread.join(5)
        server.close()
    assert b"".join(received) == b"a 1 1\nb 2 1\n"
    with pytest.raises(SendFailed) as failed:  # nobody listens there any more
        GraphiteTransport("127.0.0.1", port, timeout_s=5).send(b"c 3 1\n")
    assert failed.value.retriable


@pytest.mark.parametrize("text", ["v.{aggregate}.{subject}.{aggregate}", "fixed.{subject}", "{aggregate}",
                                  "odd\x00mark.{subject}.{aggregate}"])
def test_path_template__every_aggregate_of_a_window_as_formatted_one_by_one(text: str) -> None:
    template = PathTemplate(text)
    w = window("db1.example.com", "load", size_ms=10_000)
    fields = {"subject": "db1_example_com", "name": "load", "metric": "load1", "window": "10s"}
    assert template.paths(w, ("count", "p99")) == {agg: text.format(aggregate=agg, **fields)
                                                    for agg in ("count", "p99")}
