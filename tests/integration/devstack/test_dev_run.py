"""`vigil dev run` for real: its own Kafka JVM and registry (free ports, a temporary home) and the
`events` component. A component killed is reported and restarted; then the reader of the
supervisor's stdout goes away (as `tee` does on Ctrl-C) and SIGINT stops every process it started,
the Kafka JVM included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
from tests.integration.devstack.process_support import PipeLines, alive, descendants


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], PipeLines, Path]]:
    home = tmp_path / "home"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to((REPO / ".vigil" / "kafka" / "libs").resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_HOME=str(home), VIGIL_STATE_DIR=str(tmp_path / "state"), VIGIL_CONFIG=str(tmp_path / "none.yaml"),
               VIGIL_DEV_KAFKA_PORT=str(free_port()), VIGIL_DEV_CONTROLLER_PORT=str(free_port()),
               VIGIL_DEV_REGISTRY_PORT=str(free_port()), VIGIL_DEV_KAFKA_HEAP="-Xms128m -Xmx512m")
    read_fd, write_fd = os.pipe()
    with open(tmp_path / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "app", "dev", "run", "--component", "events"], cwd=REPO,
                                env=env, stdout=write_fd, stderr=stderr, stdin=subprocess.DEVNULL)
    os.close(write_fd)
    out = PipeLines(read_fd)
    yield proc, out, home
    out.close()
    if proc.poll() is None:  # the test failed half-way: nothing it started may outlive it, the JVM least of all
        left = descendants(proc.pid)
        proc.kill()
        proc.wait(30)
        for name in ("kafka", "registry"):
            pid_file = home / "run" / f"{name}.pid"
            if pid_file.exists():
                left[int(pid_file.read_text())] = name
        for pid in alive(left):
            os.kill(pid, signal.SIGKILL)
    print(f"--- stderr ---\n{(tmp_path / 'stderr.log').read_text(errors='replace')[-3000:]}")


def test_dev_run__killed_component_restarted_then_sigint_with_stdout_gone_stops_everything(dev_run) -> None:
    proc, out, home = dev_run
    first = int(out.wait_for(r"\| started events \(pid (\d+)\)", timeout_s=240).group(1))
    kafka_pid = int((home / "run" / "kafka.pid").read_text())
    registry_pid = int((home / "run" / "registry.pid").read_text())
    started = descendants(proc.pid)
    assert {kafka_pid, registry_pid, first} <= started.keys()
    assert "kafka.Kafka" in started[kafka_pid]

    mark = len(out.lines)
    os.kill(first, signal.SIGKILL)
    out.wait_for(r"^!!! events DIED: killed by SIGKILL \(signal 9\)", timeout_s=60, after=mark)
    out.wait_for(r"^!!! events: restarting in", timeout_s=10, after=mark)
    second = int(out.wait_for(r"\| started events \(pid (\d+)\)", timeout_s=60, after=mark).group(1))
    assert second != first
    started |= descendants(proc.pid)

    out.close()  # Ctrl-C also killed `tee`: every later print of the supervisor fails with EPIPE
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=180)

    assert alive(started) == {}
    assert alive({kafka_pid: "kafka"}) == {}
    assert proc.returncode == 0
    assert not (home / "run" / "kafka.pid").exists() and not (home / "run" / "registry.pid").exists()
