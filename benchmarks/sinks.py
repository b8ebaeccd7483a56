"""Metric sinks benchmark (no Kafka): the CPU a closed window costs with every sink enabled, on
the worker's thread (the sinks agent in the AgentHarness's engine: conversion, the exposition,
the hand-over to the senders) and in the senders (batching, encoding, sending: in the sinks' sender
process, whose CPU is counted, and the worker's feeder and report threads; the loopback
destinations run in a child process of their own, not counted).

    python benchmarks/sinks.py [--windows 45000] [--identities 5000] [--json]
    python benchmarks/sinks.py --serve 19091,12003   # only the destinations, until Ctrl-C

`--serve HTTP_PORT,TCP_PORT` runs just the destinations (an HTTP endpoint answering 200 to every
POST, a TCP listener reading lines) on loopback, for another benchmark whose sinks need somewhere to
send: benchmarks/sinks-all.yaml enables every sink against these ports (the pipeline benchmark's
`--with-sinks benchmarks/sinks-all.yaml`).

The Kafka side (consuming `metrics` and decoding each WindowAggregate) is the worker's usual
per-record cost and is not included. Compare `worker_us_per_window` with the pipeline's CPU per
event (benchmarks/pipeline.py: 1e6 / cpu_eps) times the windows closed per event.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import emit_json, log, process_cpu_s

from app.config import load_settings
from app.runtime.testing import AgentHarness
from app.sinks.config import SinksConfig, sinks_on
from app.sinks.stage import SinksStage
from app.sinks.windows import AGGREGATES

__all__ = ["sinks_cpu"]

SINKS = ("remote_write", "graphite", "otlp")


def _destinations(ports: Any | None, ready: Any | None, http_port: int = 0, tcp_port: int = 0) -> None:
    """(A child process:) an HTTP endpoint answering 200 and a TCP listener, both reading and
    dropping, on free ports unless given (told through `ports`), until `ready` is set (or forever)."""

    class Http(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Lines(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.read(65536):
                pass

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    http = ThreadingHTTPServer(("127.0.0.1", http_port), Http)
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", tcp_port), Lines)
    for server in (http, tcp):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    if ports is not None:
        ports.put((http.server_address[1], tcp.server_address[1]))
    (ready or threading.Event()).wait()


def _records(windows: int, identities: int, now_ms: int) -> list[dict[str, Any]]:
    size_ms = 10_000
    rounds = max(1, windows // identities)
    first = now_ms - rounds * size_ms
    return [{"subject": f"host{i % identities}", "name": "load", "metric": "load1",
             "window_start": first + (i // identities) * size_ms, "window_end": first + (i // identities + 1) * size_ms,
             "size_ms": size_ms, "count": 10, "sum": 12.5, "min": 0.5, "max": 2.5, "mean": 1.25, "last": 1.0,
             "p50": 1.2, "p95": 2.4, "p99": 2.5, "sketch": None} for i in range(windows)]


def _counts(sinks: SinksStage, name: str) -> tuple[float, float]:
    """(samples sent, samples dropped for any reason) of one sink so far."""
    # each counter's own collect(): the registry's would also render every exposed series each time
    def total(counter: Any) -> float:
        return sum(s.value for family in counter.collect() for s in family.samples
                   if s.name.endswith("_total") and s.labels.get("sink") == name)

    return total(sinks.metrics.sent), total(sinks.metrics.dropped)


def _feed(harness: AgentHarness, sinks: SinksStage, records: list[dict[str, Any]], batch: int) -> float:
    """Hand `records` to the sinks agent in batches and wait until every sink sent (or dropped)
    them all; returns the CPU seconds of this (the worker's) thread."""
    expected = {name: sum(_counts(sinks, name)) + len(records) * len(AGGREGATES) for name in SINKS}
    thread0 = time.thread_time()
    for i in range(0, len(records), batch):
        harness.feed_many("metrics", records[i:i + batch], key="k", type_name="vigil.WindowAggregate")
    worker_s = time.thread_time() - thread0
    deadline = time.monotonic() + 600
    while any(sum(_counts(sinks, name)) < expected[name] for name in SINKS):
        if time.monotonic() > deadline:
            raise TimeoutError({name: _counts(sinks, name) for name in SINKS})
        time.sleep(0.01)
    return worker_s


def sinks_cpu(windows: int, identities: int, batch: int = 1000) -> dict[str, Any]:
    """CPU µs per closed window: on the worker's thread and in the senders, all four sinks on."""
    ctx = multiprocessing.get_context("spawn")
    ports, ready = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_destinations, args=(ports, ready), daemon=True)
    child.start()
    http_port, tcp_port = ports.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-bench-sinks-") as state:
            settings = sinks_on(load_settings(state_dir=Path(state)), prometheus={"max_series": 1_000_000},
                                remote_write={"url": f"http://127.0.0.1:{http_port}/api/v1/write"},
                                otlp={"endpoint": f"http://127.0.0.1:{http_port}"},
                                graphite={"address": f"127.0.0.1:{tcp_port}"})
            sinks = SinksStage(SinksConfig.from_settings(settings), state_dir=Path(state))
            stage = sinks.stage()
            now_ms = int(time.time() * 1000)
            records = _records(windows, identities, now_ms)
            harness = AgentHarness(stage.agents, wall_clock_ms=now_ms)
            # Warm-up, not measured: every identity's first window (what the encoders make once per
            # identity: labels, attributes, paths); a worker pays that once per identity it sees.
            _feed(harness, sinks, records[:identities], batch)
            measured = records[identities:]
            # the senders run in a child process (sinks.senders: process): its CPU counts too
            pids = [pid for sender in sinks.push if (pid := getattr(sender, "pid", None)) is not None]
            cpu0, wall0 = time.process_time() + sum(map(process_cpu_s, pids)), time.perf_counter()
            worker_s = _feed(harness, sinks, measured, batch)
            total_s = time.process_time() + sum(map(process_cpu_s, pids)) - cpu0
            wall_s = time.perf_counter() - wall0
            windows = len(measured)
            dropped = {name: _counts(sinks, name)[1] for name in SINKS}
            stage.close()
    finally:
        ready.set()
        child.join(10)
    return {"windows": windows, "identities": identities,
            "worker_us_per_window": round(worker_s / windows * 1e6, 2),
            "senders_us_per_window": round((total_s - worker_s) / windows * 1e6, 2),
            "total_us_per_window": round(total_s / windows * 1e6, 2),
            "wall_s": round(wall_s, 2), "dropped_samples": dropped,
            "exposed_series": sinks.exposition.series if sinks.exposition else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=45_000,
                        help="closed windows handed over at once, the first of each identity not measured (more "
                             "than a sink's queue_windows, 50,000, overflows it: counted as dropped)")
    parser.add_argument("--identities", type=int, default=5_000)
    parser.add_argument("--serve", metavar="HTTP_PORT,TCP_PORT", default=None,
                        help="only run the destinations on these loopback ports until interrupted")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        http_port, tcp_port = (int(p) for p in args.serve.split(","))
        log(f"destinations: HTTP on 127.0.0.1:{http_port}, TCP lines on 127.0.0.1:{tcp_port}; Ctrl-C stops")
        try:
            _destinations(None, None, http_port, tcp_port)
        except KeyboardInterrupt:
            pass
        return
    result = sinks_cpu(args.windows, args.identities)
    log(f"sinks: {result['worker_us_per_window']} µs per window on the worker's thread, "
        f"{result['senders_us_per_window']} µs in the senders (samples dropped: {result['dropped_samples']})")
    emit_json(result, args.json)


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
