"""Fixtures for registry integration tests: registries on their own topic, stopped at teardown."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from app.config import Settings
from app.registry.client import RegistryClient
from app.registry.server import RegistryHandle, start_registry_in_thread


@pytest.fixture
def fresh_registry_settings(base_settings: Settings) -> Settings:
    """Settings with a topic prefix of their own, so this test's registry topic starts empty."""
    return base_settings.model_copy(update={"topic_prefix": f"regtest-{uuid.uuid4().hex[:8]}-"})


@pytest.fixture
def start_registry() -> Iterator[Callable[[Settings], RegistryHandle]]:
    """Factory: start a Kafka-backed registry instance for some settings (stopped at teardown)."""
    handles: list[RegistryHandle] = []

    def start(settings: Settings) -> RegistryHandle:
        handle = start_registry_in_thread(settings, host="127.0.0.1", port=0)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def client(registry_url: str) -> Iterator[RegistryClient]:
    """Vigil's client for the session registry."""
    c = RegistryClient(registry_url)
    yield c
    c.close()


@pytest.fixture
def subject() -> str:
    """A subject name no other test uses (the session registry is shared)."""
    return f"t.subject-{uuid.uuid4().hex[:10]}"
