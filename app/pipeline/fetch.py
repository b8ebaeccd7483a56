"""Read events from Kafka at the partitions and offsets the archive index names (`vigil events get`,
and the UI server, which keeps one reader open for all its lookups)."""

from __future__ import annotations

import threading
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

__all__ = ["EventReader", "FetchError", "fetch_event"]


class FetchError(Exception):
    """The indexed event cannot be read back; the message says where and why."""


class EventReader:
    """One consumer (no group) and one serde for reading indexed events one location at a time.
    Thread-safe (reads are serialised); close it when done."""

    def __init__(self, settings: Settings, *, serde: AvroSerde | None = None) -> None:
        self.settings = settings
        self._registry: RegistryClient | None = None
        if serde is None:
            self._registry = RegistryClient.from_settings(settings)
            serde = AvroSerde(self._registry)
        self._serde = serde
        # Short fetch waits: a fetch left waiting at a partition's end (after the last read) would hold up
        # the next assignment for fetch.wait.max.ms (500 ms by default) -- per event read.
        self._consumer = make_consumer(settings, f"vigil-events-get-{uuid.uuid4().hex[:8]}",
                                       **{"enable.partition.eof": True, "isolation.level": "read_committed",
                                          "fetch.wait.max.ms": 5, "queued.max.messages.kbytes": 4096})
        self._lock = threading.Lock()

    def read(self, location: dict[str, Any], *, timeout_s: float = 15.0, registry_wait_s: float = 60.0,
             notify: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The event at `location` (an /events/get answer: logical topic, partition, offset, id) as
        {"id", "topic", "partition", "offset", "time", "timestamp", "key", "type", "event"}. While the
        schema registry is unavailable it waits up to `registry_wait_s` (telling `notify` once)."""
        topic = self.settings.topic(location["topic"])
        partition, offset = int(location["partition"]), int(location["offset"])
        where = f"{topic}[{partition}]@{offset}"
        with self._lock:
            self._consumer.assign([TopicPartition(topic, partition, offset)])
            try:
                msgs = self._consumer.consume(1, timeout=timeout_s)
            finally:
                self._consumer.unassign()
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
        try:
            type_name, record = RegistryWait(notify=notify, deadline_s=registry_wait_s).call(
                lambda: self._serde.decode_typed(msg.value(), topic=topic, partition=partition, offset=offset))
        except DecodeError as exc:
            raise FetchError(str(exc)) from exc
        except RegistryError as exc:
            raise FetchError(f"cannot decode {where}: the schema registry does not answer ({exc})") from exc
        if record.get("id") != location["id"]:
            raise FetchError(f"the index says event {location['id']} is at {where}, but the record there has id "
                             f"{record.get('id')!r}: the index is stale (was the topic recreated?)")
        key = msg.key()
        return {"id": location["id"], "topic": topic, "partition": partition, "offset": offset,
                "time": location["time"], "timestamp": msg.timestamp()[1],
                "key": key.decode(errors="replace") if key is not None else None, "type": type_name, "event": record}

    def close(self) -> None:
        """Close the consumer (and the registry client it made)."""
        try:
            self._consumer.close()
        finally:
            if self._registry is not None:
                self._registry.close()


def fetch_event(settings: Settings, location: dict[str, Any], *, timeout_s: float = 15.0,
                registry_wait_s: float = 60.0, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The event at `location` (see EventReader.read), with a reader of its own."""
    reader = EventReader(settings)
    try:
        return reader.read(location, timeout_s=timeout_s, registry_wait_s=registry_wait_s, notify=notify)
    finally:
        reader.close()
