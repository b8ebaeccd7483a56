"""Thin factories for confluent-kafka clients built from Settings (librdkafka pass-through applied)."""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from app.config import ConfigError, Settings

__all__ = ["PRODUCER_DEFAULTS", "BusUnavailable", "make_admin", "make_consumer", "make_producer", "release_producer",
           "take_available", "wait_for_kafka"]


class BusUnavailable(Exception):
    """Kafka did not answer in time."""


def _build(cls: type, conf: dict[str, Any], role: str) -> Any:
    try:
        return cls(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid Kafka {role} configuration: {exc}") from exc


#: What make_producer sets before the settings' and the caller's config (bridges and beacons use it as is).
PRODUCER_DEFAULTS: Final[dict[str, Any]] = {"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4",
                                            "batch.num.messages": 10000, "queue.buffering.max.kbytes": 1048576}


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer with sensible defaults (idempotent, lz4, small linger: PRODUCER_DEFAULTS) plus
    pass-through config."""
    conf = dict(PRODUCER_DEFAULTS)
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


def take_available(consumer: Consumer, max_messages: int, wait_s: float) -> list[Any]:
    """Up to `max_messages` records (and events) the consumer has now; when it has none, wait up to
    `wait_s` for the first and return it with whatever arrived with it.

    `consume(n, timeout)` alone returns only once it has all n or the timeout passed: a record that
    arrives just after an empty poll would wait out the whole timeout (measured: the worker's alert
    latency tail was such 100 ms idle waits)."""
    msgs = consumer.consume(max_messages, timeout=0)
    if msgs or wait_s <= 0:
        return msgs
    msgs = consumer.consume(1, timeout=wait_s)
    if msgs and max_messages > 1:
        msgs += consumer.consume(max_messages - 1, timeout=0)
    return msgs


def release_producer(producer: Producer) -> int:
    """Prepare to let go of a producer without waiting: what Kafka has not acknowledged is purged
    (each record's delivery callback is told so) and the purge reports are served; returns how many
    records were dropped. The caller then drops its reference.

    confluent-kafka producers have no close(): librdkafka's handle, which keeps connecting to the
    brokers, goes with the producer's last reference, and librdkafka holds every pending delivery
    callback, which usually holds the producer's owner (so an owner with records in flight would
    keep its producer to the end of the process)."""
    producer.poll(0)  # reports already due are served as what they are
    dropped = len(producer)
    producer.purge()
    producer.flush(0)  # serves the purged records' delivery callbacks: librdkafka lets go of them
    return dropped


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
