"""Putting a runner together from a BeaconsConfig: beacons (built-in + plugins) and the publisher.

Shared by `vigil beacon run` and benchmarks/beacons.py so both run exactly the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from app.beacons.base import Beacon
from app.beacons.builtin import BuildEnv, build_builtin
from app.beacons.config import BeaconsConfig
from app.beacons.publisher import EventSink, SpoolingPublisher
from app.beacons.registry import build_custom, load_plugins
from app.beacons.spool import Spool
from app.config import Settings

__all__ = ["build_beacons", "open_publisher", "spool_dir"]


def build_beacons(config: BeaconsConfig, *, plugins: Iterable[str] = (), env: BuildEnv | None = None) -> list[Beacon]:
    """Enabled built-ins, then the @beacon functions of the config's and the given plugin modules.

    In a container, VIGIL_HOST_PROC (e.g. /host/proc, the node's /proc mounted read-only) makes
    the host beacons read the node rather than the container."""
    host_proc = os.environ.get("VIGIL_HOST_PROC")
    if host_proc:
        import psutil

        psutil.PROCFS_PATH = host_proc
    specs = [*config.plugins, *(p for p in plugins if p not in config.plugins)]
    custom = load_plugins(specs) if specs else []
    return [*build_builtin(config.beacons, env), *build_custom(custom, config.beacons.custom)]


def spool_dir(config: BeaconsConfig, settings: Settings) -> Path:
    """The configured spool directory, or <settings home>/beacon-spool."""
    return config.spool.dir or settings.home / "beacon-spool"


def open_publisher(config: BeaconsConfig, settings: Settings, *, sink: EventSink | None = None,
                   ) -> SpoolingPublisher:
    """A started SpoolingPublisher: to Kafka (per `settings`) unless another sink is given."""
    spool = Spool(spool_dir(config, settings), max_events=config.spool.max_events, max_bytes=config.spool.max_bytes)
    try:
        if sink is None:
            from app.beacons.kafka_sink import KafkaSink  # the Kafka client only where it is used

            sink = KafkaSink(settings, delivery_timeout_ms=config.spool.delivery_timeout_ms)
        publisher = SpoolingPublisher(sink, spool, subject=config.subject, tags=config.tags,
                                      delivery_timeout_s=config.spool.delivery_timeout_ms / 1000)
    except BaseException:
        spool.close()
        raise
    return publisher.start()
