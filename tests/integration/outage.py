"""A private Kafka broker and schema registry that a test may stop and start again, for outage
tests (the session broker is shared and must stay up). Data and ports survive a restart."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.bus.clients import make_admin, wait_for_kafka
from app.config import Settings, load_settings
from app.devstack.kafka import LocalKafka, start_private_kafka
from app.registry.server import RegistryHandle, start_registry_in_thread
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port

__all__ = ["OutageStack"]


@dataclass
class OutageStack:
    """`settings` point at this stack's broker and registry (every topics.yaml topic created)."""

    kafka: LocalKafka
    registry_port: int
    settings: Settings
    registry: RegistryHandle | None = field(default=None)

    @classmethod
    def start(cls, home: Path) -> OutageStack:
        kafka = start_private_kafka(home, libs_dir=REPO / ".vigil" / "kafka" / "libs")
        port = free_port()
        settings = load_settings(kafka_bootstrap=kafka.bootstrap, schema_registry_url=f"http://127.0.0.1:{port}",
                                 state_dir=home / "state", home=home)
        reconcile(make_admin(settings), load_topics_file(REPO / "topics.yaml").topics, dry_run=False)
        stack = cls(kafka, port, settings)
        stack.start_registry()
        return stack

    def isolated(self, state_dir: Path) -> Settings:
        """Settings with a fresh topic prefix (every topics.yaml topic created under it)."""
        prefix = f"o{uuid.uuid4().hex[:8]}-"
        s = self.settings.model_copy(update={"topic_prefix": prefix, "state_dir": state_dir})
        reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
        return s

    # -- the broker ---------------------------------------------------------------------------------
    def stop_kafka(self) -> None:
        """Stop the broker (clean shutdown, data kept)."""
        self.kafka.stop()

    def start_kafka(self, timeout_s: float = 90.0) -> None:
        """Start the broker again on the same ports and data; returns once it answers."""
        self.kafka.start()
        wait_for_kafka(self.settings, timeout_s=timeout_s)

    # -- the registry -------------------------------------------------------------------------------
    def stop_registry(self) -> None:
        if self.registry is not None:
            self.registry.stop()
            self.registry = None

    def start_registry(self) -> None:
        """Start the registry again on the same port (ids survive: they are in Kafka)."""
        if self.registry is None:
            self.registry = start_registry_in_thread(self.settings, host="127.0.0.1", port=self.registry_port)

    def ensure_up(self) -> None:
        """Both running (a test that failed half-way may have left one stopped)."""
        if self.kafka.running_pid() is None:
            self.start_kafka()
        self.start_registry()

    def close(self) -> None:
        self.stop_registry()
        self.kafka.stop()
