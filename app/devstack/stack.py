"""`vigil dev up|down|status`: the local Kafka plus the schema registry, as background processes.

When the user points Vigil at an existing cluster or registry (flag or env), that part is not
started here; topics and schemas are still applied to whatever is configured.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.bus.clients import BusUnavailable, make_admin, wait_for_kafka
from app.config import Settings
from app.devstack.kafka import DevStackError, LocalKafka, running_pid, stop_pid, tail_file
from app.model.schemas import SchemaFileError
from app.registry.client import RegistryClient
from app.registry.files import collect_schema_files, register_schemas
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file

__all__ = ["DevStack", "StackStatus"]


@dataclass
class StackStatus:
    bootstrap: str
    registry_url: str
    kafka_ok: bool
    registry_ok: bool
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kafka_ok and self.registry_ok


@dataclass
class DevStack:
    settings: Settings
    external_kafka: bool = False
    external_registry: bool = False

    @property
    def kafka(self) -> LocalKafka:
        s = self.settings
        return LocalKafka(s.home, port=s.dev_kafka_port, controller_port=s.dev_controller_port, heap=s.dev_kafka_heap)

    @property
    def _registry_pid_file(self) -> Path:
        return self.settings.home / "run" / "registry.pid"

    def _registry_pid(self) -> int | None:
        return running_pid(self._registry_pid_file)

    def up(self, *, timeout_s: float = 120.0, log=print) -> StackStatus:
        """Start what is local, create topics, register schemas; wait until everything answers."""
        s = self.settings
        if not self.external_kafka:
            s = self.settings = self.settings.model_copy(update={"kafka_bootstrap": self.kafka.bootstrap})
            self.kafka.start()
        try:
            admin = wait_for_kafka(s, timeout_s=timeout_s)
        except BusUnavailable as exc:
            tail = "" if self.external_kafka else f"\n--- {self.kafka.log_file} ---\n{self.kafka.tail_log()}"
            raise DevStackError(f"{exc}{tail}") from exc
        _, done = reconcile(admin, load_topics_file(s.topics_file).with_prefix(s.topic_prefix).topics, dry_run=False)
        for line in done:
            log(f"topics: {line}")
        if not self.external_registry:
            s = self.settings = s.model_copy(update={"schema_registry_url": f"http://127.0.0.1:{s.dev_registry_port}"})
            self._start_registry()
        client = RegistryClient.from_settings(s)
        deadline = time.monotonic() + timeout_s
        while not client.ping():
            if time.monotonic() > deadline or (not self.external_registry and not self._registry_pid()):
                raise DevStackError(f"schema registry at {s.schema_registry_url} did not answer\n"
                                    f"--- {self._registry_log} ---\n{tail_file(self._registry_log)}")
            time.sleep(0.2)
        try:
            for reg in register_schemas(client, collect_schema_files([s.schemas_dir])):
                log(f"schemas: {reg.fullname} -> id {reg.schema_id}" if reg.error is None
                    else f"schemas: {reg.fullname} REFUSED: {reg.error}")
        except SchemaFileError as exc:
            raise DevStackError(str(exc)) from exc
        return self.status()

    @property
    def _registry_log(self) -> Path:
        return self.settings.home / "run" / "registry.log"

    def _start_registry(self) -> None:
        if self._registry_pid():
            return
        s = self.settings
        self._registry_pid_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "app", "--bootstrap", s.kafka_bootstrap,
               "registry", "serve", "--listen", f"127.0.0.1:{s.dev_registry_port}"]
        with open(self._registry_log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._registry_pid_file.write_text(str(proc.pid))

    def down(self, *, log=print) -> None:
        """Stop the registry and the broker we started (data is kept under the home dir)."""
        pid = self._registry_pid()
        if pid:
            stop_pid(pid, timeout_s=15)
            log("registry stopped")
        self._registry_pid_file.unlink(missing_ok=True)
        if not self.external_kafka:
            log("kafka stopped" if self.kafka.stop() else "kafka was not running")

    def status(self) -> StackStatus:
        """Does each part answer right now?"""
        s = self.settings
        bootstrap = s.kafka_bootstrap if self.external_kafka else self.kafka.bootstrap
        url = s.schema_registry_url if self.external_registry else f"http://127.0.0.1:{s.dev_registry_port}"
        kafka_ok = False
        notes = []
        try:
            md = make_admin(s.model_copy(update={"kafka_bootstrap": bootstrap}), log_level=0).list_topics(timeout=3)
            kafka_ok = bool(md.brokers)
        except Exception as exc:  # any client error means "not answering"
            notes.append(f"kafka: {exc}")
        client = RegistryClient(url, timeout_s=3)
        registry_ok = client.ping()
        client.close()
        return StackStatus(bootstrap, url, kafka_ok, registry_ok, notes)

