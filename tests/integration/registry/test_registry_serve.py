"""`vigil registry serve` as a process: serves the API from Kafka and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from app.registry.client import RegistryClient
from tests.conftest import REPO, free_port, wait_until
from tests.unit.registry.compat_cases import BASE


def _answers(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        pytest.fail(f"vigil registry serve exited with {proc.returncode}:\n{out}")
    try:
        return httpx.get(f"{url}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_command__serves_then_stops_cleanly(kafka_bootstrap: str, tmp_path, stop_signal: int) -> None:
    port = free_port()
    prefix = f"serve-{uuid.uuid4().hex[:8]}-"
    env = {**os.environ, "VIGIL_TOPIC_PREFIX": prefix, "VIGIL_CONFIG": str(tmp_path / "none.yaml")}
    cmd = [sys.executable, "-c", "from app.cli import main; main()", "--bootstrap", kafka_bootstrap,
           "registry", "serve", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url, proc), timeout_s=60, message=f"registry at {url}")
        client = RegistryClient(url)
        assert client.register("served", BASE) == 1
        assert client.lookup("served", BASE).version == 1
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert f"{prefix}_vigil_schemas" in out
    assert "Traceback" not in out


def test_serve_command__unreachable_kafka_is_a_clear_error(tmp_path) -> None:
    env = {**os.environ, "VIGIL_CONFIG": str(tmp_path / "none.yaml")}
    cmd = [sys.executable, "-c", "from app.cli import main; main()", "--bootstrap", f"127.0.0.1:{free_port()}",
           "registry", "serve", "--listen", f"127.0.0.1:{free_port()}", "--startup-timeout", "2"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "did not answer" in done.stderr and "Traceback" not in done.stderr
