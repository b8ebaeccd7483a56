"""The long-lived components `vigil dev run` supervises, in start order.

A component whose area is not part of this build (its module is missing) is left out, so the
local stack always runs every component the project has.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from app.config import Settings
from app.devstack.supervisor import Component

__all__ = ["local_components"]

REPO = Path(__file__).resolve().parents[2]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def local_components(settings: Settings, *, rules_dir: str) -> list[Component]:
    """Every component this project has, pointed at the local stack."""
    env = {"VIGIL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "VIGIL_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
           "VIGIL_RULES_DIR": str(Path(rules_dir).resolve())}
    vigil = [sys.executable, "-m", "app"]
    components = [Component("worker", [*vigil, "worker", "--http", "127.0.0.1:8088"], env)]
    if _have("app.executor.cli"):
        config = REPO / "executor.yaml"
        components.append(Component("executor", [*vigil, "executor", *(["--config", str(config)] if config.exists()
                                                                        else [])], env))
    components += [
        Component("http", [*vigil, "bridge", "http", "--listen", "127.0.0.1:8080"], env),
        Component("syslog", [*vigil, "bridge", "syslog", "--listen", "udp://127.0.0.1:5514",
                             "--listen", "tcp://127.0.0.1:5514"], env),
        Component("beacons", [*vigil, "beacon", "run", "-c", str(REPO / "beacons.yaml")], env),
        Component("events", [*vigil, "events", "tail"], env),
    ]
    if _have("app.web.cli"):
        components.append(Component("ui", [*vigil, "ui", "--listen", "127.0.0.1:8090",
                                           "--worker", "http://127.0.0.1:8088"], env))
    return components
