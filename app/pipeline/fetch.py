"""Read one event from Kafka at the partition and offset the archive index names (`vigil events get`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient
from app.registry.errors import RegistryError
from app.registry.waiting import RegistryWait

__all__ = ["FetchError", "fetch_event"]


class FetchError(Exception):
    """The indexed event cannot be read back; the message says where and why."""


def fetch_event(settings: Settings, location: dict[str, Any], *, timeout_s: float = 15.0,
                registry_wait_s: float = 60.0, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The event at `location` (an /events/get answer: logical topic, partition, offset, id) as
    {"id", "topic", "partition", "offset", "time", "timestamp", "key", "type", "event"}. While the
    schema registry is unavailable it waits up to `registry_wait_s` (telling `notify` once)."""
    topic = settings.topic(location["topic"])
    partition, offset = int(location["partition"]), int(location["offset"])
    where = f"{topic}[{partition}]@{offset}"
    consumer = make_consumer(settings, f"vigil-events-get-{uuid.uuid4().hex[:8]}",
                             **{"enable.partition.eof": True, "isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        msgs = consumer.consume(1, timeout=timeout_s)
        if not msgs:
            raise FetchError(f"no record at {where} within {timeout_s:.0f}s (is Kafka reachable?)")
        msg = msgs[0]
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                raise FetchError(f"{where} is past the end of the partition: the index is newer than the topic "
                                 "(was it recreated?)")
            raise FetchError(f"cannot read {where}: {msg.error().str()}")
        if msg.offset() != offset:
            raise FetchError(f"{where} is gone (retention or compaction; the oldest record left is at offset "
                             f"{msg.offset()})")
        registry = RegistryClient.from_settings(settings)
        serde = AvroSerde(registry)
        try:
            type_name, record = RegistryWait(notify=notify, deadline_s=registry_wait_s).call(
                lambda: serde.decode_typed(msg.value(), topic=topic, partition=partition, offset=offset))
        except DecodeError as exc:
            raise FetchError(str(exc)) from exc
        except RegistryError as exc:
            raise FetchError(f"cannot decode {where}: the schema registry does not answer ({exc})") from exc
        finally:
            registry.close()
    finally:
        consumer.close()
    if record.get("id") != location["id"]:
        raise FetchError(f"the index says event {location['id']} is at {where}, but the record there has id "
                         f"{record.get('id')!r}: the index is stale (was the topic recreated?)")
    key = msg.key()
    return {"id": location["id"], "topic": topic, "partition": partition, "offset": offset,
            "time": location["time"], "timestamp": msg.timestamp()[1],
            "key": key.decode(errors="replace") if key is not None else None, "type": type_name, "event": record}
