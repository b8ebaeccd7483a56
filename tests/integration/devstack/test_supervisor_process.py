"""The supervisor of `vigil dev run` as a real process around stand-in components (no Kafka): a
component that dies is reported and restarted; SIGINT/SIGTERM stops every process it started, even
after the reader of its stdout went away; a component deaf to SIGTERM is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_until
from tests.integration.devstack.process_support import PipeLines, alive, descendants

# prints its pid and its helper's (a grandchild in its process group), then runs until stopped
STEADY = ("import subprocess, sys, time; helper = subprocess.Popen(['sleep', '1000']); "
          "print('steady up, helper', helper.pid, flush=True); time.sleep(1000)")
# ignores SIGTERM: only SIGKILL stops it
DEAF = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('deaf up', flush=True); time.sleep(1000)")
STOP_TIMEOUT_S = 3.0


class FakeRun:
    def __init__(self, tmp_path: Path) -> None:
        self.stack_file = tmp_path / "stack"
        self.stderr_path = tmp_path / "stderr.log"
        read_fd, write_fd = os.pipe()
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.devstack.fake_stack", str(STOP_TIMEOUT_S),
                 f"steady={STEADY}", f"deaf={DEAF}"],
                cwd=REPO, stdout=write_fd, stderr=stderr, stdin=subprocess.DEVNULL,
                env={**os.environ, "FAKE_STACK_FILE": str(self.stack_file), "PYTHONPATH": str(REPO)})
        os.close(write_fd)
        self.out = PipeLines(read_fd)

    def started_pid(self, name: str, *, after: int = 0) -> int:
        return int(self.out.wait_for(rf"\| started {name} \(pid (\d+)\)", timeout_s=60, after=after).group(1))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def fake_run(tmp_path: Path) -> Iterator[FakeRun]:
    run = FakeRun(tmp_path)
    yield run
    run.out.close()
    if run.proc.poll() is None:  # the test failed half-way: nothing it started may outlive it
        left = descendants(run.proc.pid)
        run.proc.kill()
        run.proc.wait(30)
        for pid in alive(left):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_with_stdout_reader_gone__every_child_and_grandchild_is_stopped(fake_run: FakeRun, signum: int) -> None:
    fake_run.started_pid("steady")
    fake_run.started_pid("deaf")
    helper = int(fake_run.out.wait_for(r"steady \| steady up, helper (\d+)", timeout_s=60).group(1))
    fake_run.out.wait_for(r"deaf \| deaf up", timeout_s=60)
    started = descendants(fake_run.proc.pid)
    assert helper in started and len(started) == 3  # the two components and steady's helper
    fake_run.out.close()  # `tee` died: every later print of the supervisor fails with EPIPE

    fake_run.proc.send_signal(signum)
    fake_run.proc.wait(timeout=60)

    assert alive(started) == {}
    assert fake_run.stack_file.read_text() == "down"  # the stack's stop ran after the components
    assert fake_run.proc.returncode == 0, fake_run.stderr()
    err = fake_run.stderr()
    assert f"stopping ({signal.Signals(signum).name})" in err  # the shutdown's lines moved to stderr
    assert "deaf did not stop in 3 s: SIGKILL" in err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_component_killed__reported_with_its_last_output_and_restarted(fake_run: FakeRun) -> None:
    first = fake_run.started_pid("steady")
    fake_run.out.wait_for(r"steady \| steady up", timeout_s=60)
    mark = len(fake_run.out.lines)

    os.kill(first, signal.SIGKILL)

    fake_run.out.wait_for(r"^!!! steady DIED: killed by SIGKILL \(signal 9\) after running \d+\.\d s$",
                          timeout_s=60, after=mark)
    fake_run.out.wait_for(r"^!!!   steady up, helper \d+$", timeout_s=5, after=mark)
    fake_run.out.wait_for(r"^!!! steady: restarting in \d+\.\d s; death #1 since", timeout_s=5, after=mark)
    second = fake_run.started_pid("steady", after=mark)
    assert second != first
    fake_run.out.wait_for(r"steady \| steady up", timeout_s=60, after=mark)
    wait_until(lambda: alive({second: "steady"}), timeout_s=5, message="the restarted component running")
