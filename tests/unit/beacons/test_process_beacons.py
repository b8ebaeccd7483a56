"""process and service: real child processes found by pid file, by name and by command line,
seen starting and dying; systemd unit state through a stand-in systemctl executable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from app.beacons.base import Beacon
from app.beacons.builtin import BuildEnv
from app.beacons.builtin.process import build as build_process
from app.beacons.builtin.process import pid_from_file
from app.beacons.builtin.service import build as build_service
from app.beacons.builtin.service import unit_state
from app.beacons.config import ProcessConfig, ServiceConfig
from app.model.events import Event, Kind
from tests.conftest import wait_until

SLEEP = shutil.which("sleep") or "/bin/sleep"


class Watch:
    def __init__(self, beacon: Beacon, make_ctx) -> None:
        self.beacon, self.make_ctx, self.state, self.problems = beacon, make_ctx, None, []

    def run(self) -> list[Event]:
        ctx = self.make_ctx(self.beacon.name)
        events, self.state = self.beacon.check(ctx, self.state)
        self.problems = ctx.problems
        return events

    def statuses(self) -> list[tuple[str, str, int]]:
        return [(e.name, e.tags["state"], e.severity) for e in self.run() if e.kind == Kind.STATUS]


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def spawn(children: list[subprocess.Popen], argv: list[str]) -> subprocess.Popen:
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children.append(child)
    wait_until(lambda: psutil.Process(child.pid).cmdline(), message="the child to exec")
    return child


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def process_beacon(**spec: object) -> Beacon:
    (beacon,) = build_process(ProcessConfig(processes=[spec]), BuildEnv(systemctl=None))
    return beacon


def test_by_pidfile__start_and_kill(tmp_path: Path, children, make_ctx) -> None:
    pidfile = tmp_path / "worker.pid"
    watch = Watch(process_beacon(name="worker", pidfile=str(pidfile)), make_ctx)
    assert watch.statuses() == [("process:worker", "stopped", 2)]  # no pid file yet

    child = spawn(children, [SLEEP, "600"])
    pidfile.write_text(f"{child.pid}\n")
    events = watch.run()
    (started,) = [e for e in events if e.kind == Kind.STATUS]
    assert (started.tags["state"], started.severity, started.tags["pids"]) == ("running", 0, str(child.pid))
    assert [e.metrics["count"] for e in events if e.kind == Kind.METRIC] == [1.0]

    kill(child)
    assert watch.statuses() == [("process:worker", "stopped", 2)]  # the pid file still names the dead pid


def test_by_pidfile__a_zombie_is_not_running(tmp_path: Path, children, make_ctx) -> None:
    child = spawn(children, [SLEEP, "600"])
    (tmp_path / "z.pid").write_text(str(child.pid))
    watch = Watch(process_beacon(name="z", pidfile=str(tmp_path / "z.pid")), make_ctx)
    assert watch.statuses() == [("process:z", "running", 0)]
    child.send_signal(signal.SIGKILL)  # not reaped yet: a zombie
    wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, message="a zombie")
    assert watch.statuses() == [("process:z", "stopped", 2)]


def test_by_pidfile__garbage_is_a_problem(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "bad.pid").write_text("not a pid")
    watch = Watch(process_beacon(name="bad", pidfile=str(tmp_path / "bad.pid")), make_ctx)
    assert watch.run() == []
    assert "does not hold a pid" in watch.problems[0]
    assert pid_from_file(tmp_path / "missing.pid") is None


def test_by_name__start_and_kill(tmp_path: Path, children, make_ctx) -> None:
    name = f"vt-{uuid.uuid4().hex[:8]}"  # the kernel names a process after the file it ran
    os.symlink(SLEEP, tmp_path / name)
    watch = Watch(process_beacon(name=name), make_ctx)
    assert watch.statuses() == [(f"process:{name}", "stopped", 2)]
    first = spawn(children, [str(tmp_path / name), "600"])
    second = spawn(children, [str(tmp_path / name), "600"])
    (running,) = [e for e in watch.run() if e.kind == Kind.STATUS]
    assert running.tags["state"] == "running"
    assert running.tags["pids"] == ",".join(str(p) for p in sorted([first.pid, second.pid]))
    kill(first)
    assert watch.statuses() == []  # one left: still running
    kill(second)
    assert watch.statuses() == [(f"process:{name}", "stopped", 2)]


def test_by_cmdline_with_min_count(children, make_ctx) -> None:
    token = f"vigil-test-{uuid.uuid4().hex}"
    watch = Watch(process_beacon(name="pool", cmdline=token, min_count=2), make_ctx)
    spawn(children, [sys.executable, "-c", "import time; time.sleep(600)", token])
    (one,) = [e for e in watch.run() if e.kind == Kind.STATUS]
    assert (one.tags["state"], one.severity) == ("stopped", 2) and "fewer than 2" in one.text
    spawn(children, [sys.executable, "-c", "import time; time.sleep(600)", token])
    assert watch.statuses() == [("process:pool", "running", 0)]


# -- service ------------------------------------------------------------------------------------------
def test_service__without_systemd_falls_back_to_the_process(tmp_path: Path, children, make_ctx) -> None:
    name = f"vs-{uuid.uuid4().hex[:8]}"
    os.symlink(SLEEP, tmp_path / name)
    (beacon,) = build_service(ServiceConfig(services=[name]), BuildEnv(systemctl=None))
    watch = Watch(beacon, make_ctx)
    (stopped,) = [e for e in watch.run() if e.kind == Kind.STATUS]
    assert (stopped.name, stopped.tags["state"], stopped.tags["source"]) == (f"service:{name}", "stopped", "process")
    child = spawn(children, [str(tmp_path / name), "600"])
    assert watch.statuses() == [(f"service:{name}", "running", 0)]
    kill(child)
    assert watch.statuses() == [(f"service:{name}", "stopped", 2)]


@pytest.fixture
def systemctl(tmp_path: Path) -> Path:
    """A stand-in systemctl: `is-active -- UNIT` prints the word in state-UNIT (nothing if absent)."""
    script = tmp_path / "systemctl"
    script.write_text('#!/bin/sh\n[ "$1" = is-active ] || exit 64\n'
                      'f="$(dirname "$0")/state-$3"\n[ -f "$f" ] && exec cat "$f"\nexit 4\n')
    script.chmod(0o755)
    return script


def test_service__systemd_unit_state_changes(systemctl: Path, make_ctx) -> None:
    (beacon,) = build_service(ServiceConfig(services=["nginx", {"name": "db", "unit": "postgresql@15.service"}]),
                              BuildEnv(systemctl=str(systemctl)))
    watch = Watch(beacon, make_ctx)
    (systemctl.parent / "state-nginx.service").write_text("active\n")
    (systemctl.parent / "state-postgresql@15.service").write_text("activating\n")
    events = watch.run()
    assert [(e.name, e.tags["state"], e.severity, e.tags["unit"]) for e in events] == [
        ("service:nginx", "active", 0, "nginx.service"), ("service:db", "activating", 1, "postgresql@15.service")]
    (systemctl.parent / "state-nginx.service").write_text("failed\n")
    (systemctl.parent / "state-postgresql@15.service").write_text("active\n")
    assert watch.statuses() == [("service:nginx", "failed", 2), ("service:db", "active", 0)]
    (systemctl.parent / "state-nginx.service").write_text("something-new\n")
    assert watch.statuses() == [("service:nginx", "something-new", 3)]  # unknown words are UNKNOWN


def test_service__systemctl_saying_nothing_is_a_problem(systemctl: Path, make_ctx) -> None:
    (beacon,) = build_service(ServiceConfig(services=["ghost"]), BuildEnv(systemctl=str(systemctl)))
    watch = Watch(beacon, make_ctx)
    assert watch.run() == []
    assert watch.problems[0].startswith("service:ghost: RuntimeError: systemctl is-active ghost.service said nothing")


def test_unit_state__bounded_in_time(tmp_path: Path) -> None:
    slow = tmp_path / "slow-systemctl"
    slow.write_text(f"#!/bin/sh\nexec {SLEEP} 30\n")
    slow.chmod(0o755)
    with pytest.raises(subprocess.TimeoutExpired):
        unit_state(str(slow), "x.service", timeout_s=0.2)
