"""Thin factories for confluent-kafka clients built from Settings (librdkafka pass-through applied)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from app.config import ConfigError, Settings

__all__ = ["BusUnavailable", "make_admin", "make_consumer", "make_producer", "wait_for_kafka"]


class BusUnavailable(Exception):
    """Kafka did not answer in time."""


def _build(cls: type, conf: dict[str, Any], role: str) -> Any:
    try:
        return cls(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid Kafka {role} configuration: {exc}") from exc


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer with sensible defaults (idempotent, lz4, small linger) plus pass-through config."""
    conf = {"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4",
            "batch.num.messages": 10000, "queue.buffering.max.kbytes": 1048576}
    conf.update(settings.client_config())
    conf.update(overrides)
    return _build(Producer, conf, "producer")


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in `group_id` (manual commits by default) plus pass-through config."""
    conf = {"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False}
    conf.update(settings.client_config())
    conf.update(overrides)
    return _build(Consumer, conf, "consumer")


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    conf = settings.client_config()
    conf.update(overrides)
    return _build(AdminClient, conf, "admin")


def wait_for_kafka(settings: Settings, *, timeout_s: float = 60.0) -> AdminClient:
    """Wait until the cluster answers a metadata request; return the admin client."""
    admin = make_admin(settings, **{"log_level": 0})
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return admin
        except KafkaException as exc:
            last = exc
        time.sleep(0.2)
    raise BusUnavailable(f"Kafka at {settings.kafka_bootstrap} did not answer within {timeout_s:.0f}s ({last})")
