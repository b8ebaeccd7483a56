"""A whole Vigil on given settings for tests and benchmarks of the UI: `vigil worker` (pipeline, rules,
members) and optionally `vigil executor` as subprocesses, and the UI server in a thread of this
process, each on a free loopback port, with their logs under `home`.

    with UiStack(settings, home, rules_dir=rules).start() as stack:
        stack.emit("web1", "load", kind="METRIC", metrics={"load1": 3.0})
        httpx.get(stack.ui_url + "/api/v1/status")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from app.config import Settings
from app.devstack.kafka import free_port
from app.model.events import Event
from app.sdk import Emitter
from app.web.config import load_ui_config
from app.web.server import UiHandle, start_ui_in_thread

__all__ = ["UiStack"]

REPO = Path(__file__).resolve().parents[2]
#: what the executor runs in tests: print and fire_event only (no shell commands, no mail)
EXECUTOR_YAML = "concurrency: 4\ntimeout: 10s\nretries: {max_attempts: 1}\n"


@dataclass
class UiStack:
    """Worker (+ executor) subprocesses and a UI server thread on `settings` (see the module docstring)."""

    settings: Settings
    home: Path
    rules_dir: Path | None = None
    executor: bool = True
    worker_args: tuple[str, ...] = ()
    ui_options: dict[str, Any] = field(default_factory=dict)
    #: run `vigil ui` as a process of its own (as deployed) instead of a thread of this one
    ui_process: bool = False
    worker_port: int = field(default_factory=free_port)
    executor_port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    ui: UiHandle | None = None
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _argv: dict[str, list[str]] = field(default_factory=dict)
    _restarts: int = 0
    _emitter: Emitter | None = None

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def ui_url(self) -> str:
        if self.ui_process:
            return f"http://127.0.0.1:{self.ui_port}"
        assert self.ui is not None, "start() the stack first"
        return self.ui.url

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
               "VIGIL_SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
               "VIGIL_TOPIC_PREFIX": self.settings.topic_prefix, "VIGIL_STATE_DIR": str(self.home / "state"),
               "VIGIL_CONFIG": str(self.home / "no-vigil.yaml")}
        if self.rules_dir is not None:
            env["VIGIL_RULES_DIR"] = str(self.rules_dir)
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._argv[name] = argv
        with open(self.home / f"{name}.log", "ab") as log:
            self._procs.append((name, subprocess.Popen([sys.executable, "-m", "app", *argv], cwd=REPO,
                                                       env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                                       start_new_session=True)))

    def start(self, *, timeout_s: float = 120.0) -> UiStack:
        """Start everything; returns once the worker answers and the UI server is ready (stops what it
        started and raises when something does not come up)."""
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout_s: float) -> None:
        stages = ["--stage", "pipeline", "--stage", "members"]
        if self.rules_dir is not None:
            stages += ["--stage", "rules"]
        self._spawn("worker", ["worker", *stages, "--http", f"127.0.0.1:{self.worker_port}",
                               "--app-id", f"ui-test-{self.worker_port}", "--instance-id", "w1",
                               "--session-timeout-ms", "10000", *self.worker_args])
        if self.executor:
            executor_yaml = self.home / "executor.yaml"
            executor_yaml.write_text(EXECUTOR_YAML)
            self._spawn("executor", ["executor", "-c", str(executor_yaml), "--http", f"127.0.0.1:{self.executor_port}",
                                     "--guarantee", "at_least_once", "--app-id", f"ui-exec-{self.executor_port}",
                                     "--instance-id", "x1", "--session-timeout-ms", "10000"])
        if self.ui_process:
            self._spawn("ui", ["ui", "--listen", f"127.0.0.1:{self.ui_port}", "--worker", self.worker_url,
                               *(["--rules", str(self.rules_dir)] if self.rules_dir else [])])
        else:
            ui_settings = self.settings.model_copy(update={"state_dir": self.home / "ui-state",
                                                           "rules_dir": self.rules_dir or Path("rules")})
            config = load_ui_config(ui_settings, env={}, **{"listen": "127.0.0.1:0", "workers": [self.worker_url],
                                                             **self.ui_options})
            self.ui = start_ui_in_thread(ui_settings, config, rules_dir=self.rules_dir)
        deadline = time.monotonic() + timeout_s
        self._wait_ok(f"{self.worker_url}/healthz", deadline, f"the worker did not answer within {timeout_s:.0f}s; "
                      f"see {self.home}/worker.log")
        if self.ui is not None:
            self.ui.wait_ready(max(1.0, deadline - time.monotonic()))
            return
        # the UI process: ready once it has read the status and silences topics
        self._wait_ok(f"{self.ui_url}/readyz", deadline, f"the UI was not ready within {timeout_s:.0f}s; "
                      f"see {self.home}/ui.log")

    def _wait_ok(self, url: str, deadline: float, timeout_message: str) -> None:
        """Poll `url` until it answers 200 (restarting components that died meanwhile)."""
        while True:
            self._check_alive()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(timeout_message)
            time.sleep(0.2)

    def _check_alive(self) -> None:
        """A component that died while starting is started again (at most 3 times in all), as `vigil dev
        run` restarts one: a freshly created changelog topic can be missing from a new client's
        metadata for a moment, and a worker or executor that looks at it then exits."""
        for i, (name, proc) in enumerate(self._procs):
            if proc.poll() is None:
                continue
            if self._restarts >= 3:
                raise RuntimeError(f"the {name} exited with {proc.returncode}; see {self.home}/{name}.log")
            self._restarts += 1
            del self._procs[i]
            self._spawn(name, self._argv[name])
            return

    def emit(self, subject: str, name: str, **fields: Any) -> str:
        """Emit one event (waits for Kafka's acknowledgement); returns its id."""
        if self._emitter is None:
            self._emitter = Emitter(self.settings)
        event = Event(subject=subject, name=name, **fields)
        self._emitter.emit(event)
        return event.id

    def stop(self) -> None:
        """Stop the UI server, then the subprocesses (SIGTERM, then SIGKILL after 20 s)."""
        if self._emitter is not None:
            self._emitter.close()
            self._emitter = None
        if self.ui is not None:
            self.ui.stop()
            self.ui = None
        for _name, proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._procs.clear()

    def __enter__(self) -> UiStack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
