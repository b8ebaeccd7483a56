"""Runs the stack's long-lived components as child processes in the foreground (`vigil dev run`).

Each child's output is prefixed with its name; Ctrl-C (or SIGTERM) stops them all. A child that
exits unexpectedly is restarted with backoff, so one crash does not take the local stack down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from app.devstack.kafka import stop_pid

__all__ = ["Component", "Supervisor"]


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    component: Component
    proc: subprocess.Popen
    started: float
    restarts: int = 0


class Supervisor:
    def __init__(self, components: list[Component], *, out=sys.stdout) -> None:
        self.components = components
        self.out = out
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def _spawn(self, c: Component) -> subprocess.Popen:
        env = {**os.environ, **c.env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(c.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, text=True, bufsize=1)
        threading.Thread(target=self._pump, args=(c.name, proc), daemon=True).start()
        return proc

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.out.write(f"{name:>10} | {line}")
                self.out.flush()

    def run(self) -> int:
        """Start everything, keep it running until SIGINT/SIGTERM, then stop everything."""
        prev = {s: signal.signal(s, lambda *_: self._stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for c in self.components:
                self._running[c.name] = _Running(c, self._spawn(c), time.monotonic())
            while not self._stop.wait(0.5):
                for r in self._running.values():
                    if r.proc.poll() is not None:
                        delay = min(30.0, 2.0 ** min(r.restarts, 5))
                        if time.monotonic() - r.started > delay:
                            self.out.write(f"{r.component.name:>10} | exited with {r.proc.returncode}; restarting\n")
                            r.proc = self._spawn(r.component)
                            r.started = time.monotonic()
                            r.restarts += 1
        finally:
            for r in self._running.values():
                if r.proc.poll() is None:
                    stop_pid(r.proc.pid, timeout_s=20)
            for s, h in prev.items():
                signal.signal(s, h)
        return 0
