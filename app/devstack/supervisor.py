"""Runs the stack's long-lived components as child processes in the foreground (`vigil dev run`).

Each child's output is prefixed with its name. A child that exits while the stack runs is reported
loudly (which one, its exit code or signal, its last lines of output) and restarted with backoff;
when and how often is decided by app.devstack.restarts (pure, unit-tested).

Ctrl-C or SIGTERM stops everything that was started, whatever happened to our own stdout: under
`make run | tee run.log` the same Ctrl-C also kills `tee`, so every print after it fails with EPIPE.
Output therefore goes through a Console that falls back to stderr (and then to nothing) instead of
raising, and the shutdown never depends on a print succeeding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from app.devstack.restarts import RestartPolicy, RestartTracker, format_death_report

__all__ = ["Component", "Console", "StopSignals", "Supervisor", "run_foreground"]

#: lines of a component's output kept for the report when it dies
LAST_LINES = 15


@dataclass
class Component:
    """One long-lived process of the local stack."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Console:
    """Where the supervisor's lines go: `out` while it can be written, then `fallback`, then nowhere.

    A write that fails (EPIPE once `tee` is gone, or any other OSError) never raises: the stream is
    given up, and if it is a real file descriptor it is pointed at /dev/null so that the interpreter's
    final flush at exit does not fail either."""

    def __init__(self, out: IO[str] | None = None, fallback: IO[str] | None = None) -> None:
        self._streams = [s for s in (out or sys.stdout, fallback or sys.stderr) if s is not None]
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """Print one line (thread-safe); never raises for a broken output."""
        with self._lock:
            while self._streams:
                stream = self._streams[0]
                try:
                    stream.write(text + "\n")
                    stream.flush()
                    return
                except (OSError, ValueError):  # ValueError: the stream was closed
                    self._streams.pop(0)
                    _point_at_devnull(stream)


def _point_at_devnull(stream: IO[str]) -> None:
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass


class StopSignals:
    """SIGINT and SIGTERM for the whole of a foreground run.

    Each sets `event`. While `interrupting` is on (starting the stack, which blocks on the broker),
    they also raise KeyboardInterrupt there, so a start can be abandoned; once the components run,
    and through the whole shutdown, they only set the event, so a second Ctrl-C cannot cut the
    shutdown short and leave a broker behind."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.interrupting = True
        self.received: list[str] = []

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        self.event.set()
        if self.interrupting:
            self.interrupting = False
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Handle SIGINT/SIGTERM inside the block; the previous handlers come back after it."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@dataclass
class _Child:
    component: Component
    tracker: RestartTracker
    proc: subprocess.Popen[str] | None = None
    pump: threading.Thread | None = None
    started_at_s: float = 0.0
    restart_at_s: float | None = None
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_LINES))


class Supervisor:
    """Starts the components, restarts the ones that die, stops them all when told to."""

    def __init__(self, components: list[Component], *, console: Console, policy: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = 0.2,
                 stop_timeout_s: float = 20.0) -> None:
        self.console = console
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self._children = [_Child(c, RestartTracker(self.policy)) for c in components]

    def run(self, stop: threading.Event) -> None:
        """Start everything and keep it running until `stop` is set; then stop everything."""
        try:
            for child in self._children:
                if not stop.is_set():
                    self._start(child)
            while not stop.wait(self.poll_s):
                now = self.clock()
                for child in self._children:
                    if child.proc is not None and child.proc.poll() is not None:
                        self._died(child, now)
                    elif child.proc is None and child.restart_at_s is not None and now >= child.restart_at_s:
                        self._start(child)
        finally:
            self.stop_all()

    def _start(self, child: _Child) -> None:
        c = child.component
        env = {**os.environ, **c.env, "PYTHONUNBUFFERED": "1"}
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the children in order.
        proc = subprocess.Popen(c.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, text=True, bufsize=1, errors="replace")
        child.proc, child.restart_at_s, child.started_at_s = proc, None, self.clock()
        child.last_lines.clear()
        child.tracker.started(child.started_at_s)
        child.pump = threading.Thread(target=self._pump, args=(child, proc), name=f"pump-{c.name}", daemon=True)
        child.pump.start()
        self.console.line(f"{'vigil':>10} | started {c.name} (pid {proc.pid})")

    def _pump(self, child: _Child, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        name = child.component.name
        for line in proc.stdout:
            line = line.rstrip("\n")
            child.last_lines.append(line)
            self.console.line(f"{name:>10} | {line}")
        proc.stdout.close()

    def _died(self, child: _Child, now_s: float) -> None:
        proc = child.proc
        assert proc is not None and proc.returncode is not None
        if child.pump is not None:
            child.pump.join(timeout=2.0)  # its last words (a traceback) belong in the report
        _signal_group(proc.pid, signal.SIGKILL)  # a helper it left behind would hold its port on restart
        decision = child.tracker.died(at_s=now_s)
        for line in format_death_report(child.component.name, returncode=proc.returncode,
                                        ran_s=now_s - child.started_at_s, last_lines=list(child.last_lines),
                                        decision=decision, window_s=self.policy.window_s):
            self.console.line(line)
        child.proc, child.restart_at_s = None, decision.restart_at_s

    def stop_all(self) -> None:
        """SIGTERM every running component's process group, wait, SIGKILL what is left."""
        running = [c for c in self._children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.console.line(f"{'vigil':>10} | {child.component.name} did not stop in "
                                  f"{self.stop_timeout_s:g} s: SIGKILL")
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        for child in self._children:
            if child.proc is not None:
                _signal_group(child.proc.pid, signal.SIGKILL)  # anything its children left in the group
                child.proc = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a component's process group (it leads its own session); gone already is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run_foreground(start: Callable[[], list[Component]], stop: Callable[[], None], *, console: Console,
                   policy: RestartPolicy | None = None, stop_timeout_s: float = 20.0) -> None:
    """`vigil dev run` around a stack: `start()` brings the stack up and returns the components to
    supervise; they run until SIGINT/SIGTERM; then the components are stopped and `stop()` takes the
    stack down. `stop()` runs whatever happened before it: a failed or interrupted start, a broken
    stdout, a second Ctrl-C."""
    signals = StopSignals()
    with signals.installed():
        try:
            components = start()
            signals.interrupting = False
            if not signals.event.is_set():
                console.line(f"running: {', '.join(c.name for c in components)} (Ctrl-C stops everything)")
                Supervisor(components, console=console, policy=policy, stop_timeout_s=stop_timeout_s).run(signals.event)
        except KeyboardInterrupt:
            pass
        finally:
            signals.interrupting = False
            console.line(f"{'vigil':>10} | stopping ({', '.join(signals.received) or 'exit'})")
            stop()
