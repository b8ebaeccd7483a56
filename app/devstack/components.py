"""The long-lived components `vigil dev run` supervises, in start order."""

from __future__ import annotations

import sys

from app.config import Settings
from app.devstack.supervisor import Component

__all__ = ["local_components"]


def local_components(settings: Settings, *, rules_dir: str) -> list[Component]:
    """Every component this project has, pointed at the local stack."""
    env = {"VIGIL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "VIGIL_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
           "VIGIL_RULES_DIR": rules_dir}
    vigil = [sys.executable, "-m", "app"]
    return [
        Component("events", [*vigil, "events", "tail"], env),
    ]
