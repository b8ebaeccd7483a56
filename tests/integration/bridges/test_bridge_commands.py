"""`vigil bridge http` and `vigil bridge syslog` as processes against the real Kafka: they start,
say where they listen, serve (an event through each reaches the events topic), and stop cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import REPO, wait_until

from .conftest import read_events


def _spawn(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIGIL_TOPIC_PREFIX": settings.topic_prefix, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "app", "--bootstrap", settings.kafka_bootstrap,
           "--registry", settings.schema_registry_url, "bridge", *args]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _listening(proc: subprocess.Popen[bytes], log: Path, scheme: str) -> int | None:
    """The port from the process's "listening on <scheme>://HOST:PORT" log line, once it is there."""
    if proc.poll() is not None:
        pytest.fail(f"the bridge exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
    found = re.search(rf"listening on {scheme}://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
    return int(found.group(1)) if found else None


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_bridge_commands__start_serve_and_stop_cleanly(isolated_settings: Settings, tmp_path: Path) -> None:
    http_log, syslog_log = tmp_path / "http.log", tmp_path / "syslog.log"
    http = _spawn(isolated_settings, http_log, "http", "--listen", "127.0.0.1:0")
    syslog = _spawn(isolated_settings, syslog_log, "syslog", "--listen", "udp://127.0.0.1:0",
                    "--listen", "tcp://127.0.0.1:0")
    host = f"h{uuid.uuid4().hex[:6]}"
    try:
        http_port = wait_until(lambda: _listening(http, http_log, "http"), timeout_s=60, message="http readiness")
        url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: _healthy(url), timeout_s=30, message=f"{url}/healthz")
        response = httpx.post(f"{url}/v1/events", json={"subject": host, "name": "via-http"}, timeout=30)
        assert (response.status_code, response.json()) == (202, {"accepted": 1})
        # The command records deliveries in the `deliveries` topic: a retried request is answered, not produced.
        for expected in ({"accepted": 1}, {"accepted": 1, "duplicate": True}):
            response = httpx.post(f"{url}/v1/events", json={"subject": host, "name": "keyed"},
                                  headers={"Idempotency-Key": f"k-{host}"}, timeout=30)
            assert (response.status_code, response.json()) == (202, expected)

        tcp_port = wait_until(lambda: _listening(syslog, syslog_log, "tcp"), timeout_s=60, message="syslog readiness")
        assert _listening(syslog, syslog_log, "udp")
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as tcp:
            tcp.sendall(f"<13>May 14 09:12:05 {host} via-syslog: hello\n".encode())

        events = read_events(isolated_settings, expect=3)
        assert sorted((record["subject"], record["name"]) for _, record in events) == [
            (host, "keyed"), (host, "via-http"), (host, "via-syslog")]

        for proc in (http, syslog):
            proc.send_signal(signal.SIGTERM)
        assert (http.wait(timeout=30), syslog.wait(timeout=30)) == (0, 0)
    finally:
        for proc in (http, syslog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for log in (http_log, syslog_log):
        assert "Traceback" not in log.read_text(errors="replace")
    assert "delivery ledger ready" in http_log.read_text(errors="replace")
