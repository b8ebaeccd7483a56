"""Shared fixtures. Integration tests get one real Kafka (KRaft JVM) per pytest session."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from app.devstack.kafka import free_port as free_port  # re-exported: tests import it from here
from tests.kafka_clients import fail_if_open, tracking

# No timing thresholds in tests, hypothesis' per-example deadline included: on a loaded 2-core
# machine a slow example is not a failing one.
hypothesis_settings.register_profile("vigil", deadline=None)
# CI gates merges, so there it draws the same examples every run (a property test that finds a new
# case fails a developer's run instead of a random landing); everywhere else it explores.
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("vigil"), derandomize=True)
hypothesis_settings.load_profile(os.environ.get("VIGIL_HYPOTHESIS_PROFILE", "vigil"))

REPO = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 30.0, interval_s: float = 0.05,
               message: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test with `message` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _kafka_clients_closed() -> Iterator[None]:
    """Every Kafka client the session opens is closed by its end (tests/kafka_clients.py tells
    where each one left open was made)."""
    with tracking():
        yield
        fail_if_open("at the end of the session")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's vigil.yaml or VIGIL_* env by accident."""
    for key in list(os.environ):
        if key.startswith("VIGIL_") and key not in ("VIGIL_TEST_BOOTSTRAP",):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "no-vigil.yaml"))
