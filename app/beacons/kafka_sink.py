"""The EventSink that sends beacon events to Kafka through app.sdk.Emitter.

Each event is encoded with the Emitter's serde (Confluent-framed Avro, schema from the registry)
and produced without waiting; librdkafka's delivery report for that one message says whether it
arrived, so the publisher knows exactly which events to keep in the spool.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from app.beacons.publisher import DeliveryCallback, EventRejected, SinkUnavailable
from app.config import Settings
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import EncodeError
from app.registry.client import RegistryError
from app.sdk import Emitter

__all__ = ["KafkaSink"]

log = logging.getLogger(__name__)


def _with_delivery_timeout(settings: Settings, delivery_timeout_ms: int) -> Settings:
    """Settings whose producer gives up on a message after `delivery_timeout_ms` (librdkafka waits
    5 minutes by default; a beacon would rather spool sooner). An explicit kafka_config value wins."""
    conf: dict[str, Any] = dict(settings.kafka_config)
    conf.setdefault("message.timeout.ms", delivery_timeout_ms)
    return settings.model_copy(update={"kafka_config": conf})


class KafkaSink:
    """EventSink over an Emitter (produce with delivery callbacks; never waits in send)."""

    def __init__(self, settings: Settings, *, delivery_timeout_ms: int = 30_000) -> None:
        self.emitter = Emitter(_with_delivery_timeout(settings, delivery_timeout_ms))
        self._schema = builtin_schema(Event.avro_name)

    def send(self, event: Event, on_done: DeliveryCallback) -> None:
        """Encode and produce one event; `on_done` gets the delivery outcome."""
        try:
            value = self.emitter.serde.encode(event.to_record(), self._schema)
        except EncodeError as exc:
            raise EventRejected(str(exc)) from exc
        except RegistryError as exc:  # down, overloaded or refusing: the event is fine, spool it and retry
            raise SinkUnavailable(f"the schema registry at {self.emitter.registry.url} cannot register "
                                  f"{self._schema.fullname}: {exc}") from exc

        def delivered(err: KafkaError | None, msg: Message) -> None:
            on_done(event, None if err is None else err.str())

        try:
            self.emitter.producer.produce(self.emitter.topic, value=value, key=event.key.encode(),
                                          on_delivery=delivered)
        except BufferError as exc:
            raise SinkUnavailable(f"producer queue full: {exc}") from exc
        except KafkaException as exc:
            raise SinkUnavailable(f"cannot produce to {self.emitter.topic}: {exc}") from exc

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports."""
        self.emitter.producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        """Wait for outstanding delivery reports (up to `timeout_s`)."""
        self.emitter.producer.flush(timeout_s)

    def reachable(self, timeout_s: float) -> bool:
        """Does a broker answer a metadata request for the events topic?"""
        try:
            md = self.emitter.producer.list_topics(self.emitter.topic, timeout=timeout_s)
        except KafkaException:
            return False
        topic = md.topics.get(self.emitter.topic)
        return bool(md.brokers) and topic is not None and topic.error is None

    def close(self, timeout_s: float) -> None:
        """Flush; then release the producer: what is still pending is purged, so each of those gets a
        failed delivery report (_PURGE_QUEUE / _PURGE_INFLIGHT)."""
        self.emitter.producer.flush(timeout_s)
        left = self.emitter.release()
        if left:
            log.warning("%d beacon event(s) not acknowledged at shutdown; they stay in the spool", left)
