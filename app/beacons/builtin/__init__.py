"""The built-in beacons, one module each. Every module has `build(section, env) -> list[Beacon]`
(empty when there is nothing to watch); modules are imported only when their beacon is enabled.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.beacons.base import Beacon
from app.beacons.config import BUILTIN_BEACONS, BeaconSet

__all__ = ["BuildEnv", "build_builtin", "systemctl_path"]


def systemctl_path() -> str | None:
    """systemctl, if systemd is the running init (the sd_booted() test); else None."""
    path = shutil.which("systemctl")
    return path if path and Path("/run/systemd/system").is_dir() else None


@dataclass(frozen=True)
class BuildEnv:
    """What some built-ins need from outside their config section."""

    systemctl: str | None = field(default_factory=systemctl_path)
    started_monotonic: float = field(default_factory=time.monotonic)


def build_builtin(config: BeaconSet, env: BuildEnv | None = None) -> list[Beacon]:
    """The enabled built-in beacons of a config, in the documented order."""
    env = env or BuildEnv()
    beacons: list[Beacon] = []
    for name in BUILTIN_BEACONS:
        section = getattr(config, name)
        if section.enabled:
            module = importlib.import_module(f"app.beacons.builtin.{name}")
            beacons.extend(module.build(section, env))
    return beacons
