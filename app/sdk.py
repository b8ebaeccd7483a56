"""Python SDK: produce events (built-in or any registered type) and read them back.

    from app.sdk import emit
    event_id = emit("web1", "load", kind="metric", metrics={"load1": 0.7}, tags={"class": "client"})

Uses the same settings as the CLI (vigil.yaml / VIGIL_* env).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from app.bus.clients import make_consumer, make_producer, release_producer
from app.config import Settings, default_settings
from app.globs import glob_matcher
from app.model.events import Event, event_key, now_ms
from app.model.ids import new_id
from app.model.schemas import SchemaFile, builtin_schema, parse_schema_text, record_name_subject
from app.model.serde import AvroSerde, DecodeError, EncodeError
from app.registry.client import RegistryClient, RegistryError
from app.registry.waiting import RegistryWait

__all__ = ["EmitError", "Emitter", "TailedEvent", "emit", "emit_typed", "tail_events"]

log = logging.getLogger(__name__)

EVENTS_TOPIC = "events"

#: confluent-kafka delivery callback: (error or None, message)
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class EmitError(Exception):
    """An event could not be produced; says why (nothing was sent)."""


class Emitter:
    """Produces events to the events topic in Confluent-framed Avro.

    While the schema registry is unavailable (it is needed once per record type, to register or
    fetch its schema), `emit`/`emit_typed` wait for it, up to `registry_wait_s` (None: until it
    answers), logging once that they wait; then they raise EmitError.
    """

    def __init__(self, settings: Settings | None = None, *, registry: RegistryClient | None = None,
                 registry_wait_s: float | None = 60.0) -> None:
        self.settings = settings or default_settings()
        self.registry = registry or RegistryClient.from_settings(self.settings)
        self.serde = AvroSerde(self.registry)
        self.registry_wait = RegistryWait(notify=log.warning, deadline_s=registry_wait_s)
        self._producer: Producer | None = make_producer(self.settings)
        self.topic = self.settings.topic(EVENTS_TOPIC)
        self._errors: list[str] = []
        self._types: dict[str, SchemaFile] = {}

    @property
    def producer(self) -> Producer:
        """The emitter's Kafka producer; EmitError once the emitter is closed."""
        if self._producer is None:
            raise EmitError(f"the emitter for {self.topic} is closed")
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"delivery to {msg.topic()} failed: {err.str()}")

    def _produce(self, key: str, value: bytes, wait: bool, on_delivery: DeliveryCallback | None = None) -> None:
        callback = self._on_delivery
        if on_delivery is not None:
            def callback(err: KafkaError | None, msg: Message) -> None:
                self._on_delivery(err, msg)
                on_delivery(err, msg)
        try:
            self.producer.produce(self.topic, value=value, key=key.encode(), on_delivery=callback)
        except (KafkaException, BufferError) as exc:
            raise EmitError(f"cannot produce to {self.topic}: {exc}") from exc
        self.producer.poll(0)
        if wait:
            self.flush()

    def emit(self, event: Event | None = None, /, *, wait: bool = True, on_delivery: DeliveryCallback | None = None,
             **fields: Any) -> str:
        """Produce a vigil.Event (given, or built from keyword fields); returns its id.
        `on_delivery(err, msg)` is called for this event once Kafka acknowledged it (or failed)."""
        ev = event if event is not None else Event(**fields)
        value = self._encode(ev.to_record(), builtin_schema(Event.avro_name))
        self._produce(ev.key, value, wait, on_delivery)
        return ev.id

    def _encode(self, record: dict[str, Any], schema: SchemaFile) -> bytes:
        """Encode, waiting out a registry outage (first use of a schema registers it)."""
        try:
            return self.registry_wait.call(lambda: self.serde.encode(record, schema))
        except EncodeError as exc:
            raise EmitError(str(exc)) from exc
        except RegistryError as exc:
            raise EmitError(f"cannot register the schema of {schema.fullname} with the schema registry at "
                            f"{self.registry.url}: {exc}") from exc

    def schema_for(self, fullname: str) -> SchemaFile:
        """Latest registered schema of a record type (record-name subject strategy)."""
        schema = self._types.get(fullname)
        if schema is None:
            try:
                latest = self.registry_wait.call(lambda: self.registry.version(record_name_subject(fullname), "latest"))
            except RegistryError as exc:
                if exc.error_code in (40401, 40402):
                    raise EmitError(f"type {fullname} is not registered: run `vigil schemas register` "
                                    f"with its .avsc first") from exc
                raise EmitError(f"cannot fetch schema of {fullname}: {exc}") from exc
            schema = self._types[fullname] = parse_schema_text(latest.schema, where=f"registry {fullname}")
        return schema

    def emit_typed(self, fullname: str, record: dict[str, Any], *, wait: bool = True,
                   on_delivery: DeliveryCallback | None = None) -> str:
        """Produce a record of any registered type that has subject, name and time; returns its id
        (the record's `id` field if it has one, else a new id used only for this call's answer)."""
        schema = self.schema_for(fullname)
        missing = [f for f in ("subject", "name", "time") if f not in schema.field_names]
        if missing:
            raise EmitError(f"type {fullname} lacks field(s) {', '.join(missing)}: events need subject, name, time")
        rec = dict(record)
        rec.setdefault("time", now_ms())
        if "id" in schema.field_names:
            rec.setdefault("id", new_id())
        unknown = sorted(set(rec) - set(schema.field_names))
        if unknown:
            raise EmitError(f"{fullname} has no field(s) {', '.join(unknown)}")
        value = self._encode(rec, schema)
        self._produce(event_key(str(rec["subject"]), str(rec["name"])), value, wait, on_delivery)
        return str(rec.get("id") or new_id())

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every produced event to be acknowledged; raise EmitError on failures."""
        left = self.producer.flush(timeout_s)
        if left:
            raise EmitError(f"{left} event(s) not acknowledged by Kafka at {self.settings.kafka_bootstrap} "
                            f"within {timeout_s:.0f}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise EmitError("; ".join(errors))

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait up to `timeout_s` for Kafka to acknowledge what was produced (EmitError if it did not,
        as `flush`), then `release` the producer and the registry client either way. A second call
        does nothing."""
        if self._producer is None:
            return
        try:
            self.flush(timeout_s)
        finally:
            self.release()

    def release(self) -> int:
        """Close without waiting: drop the records Kafka has not acknowledged (each one's delivery
        callback is told so, with a purge error), let go of the producer and close the registry
        client; returns how many records were dropped. A second call does nothing.

        confluent-kafka producers have no close(): librdkafka's handle, which keeps connecting to
        the brokers, goes with the producer's last reference. librdkafka itself holds every pending
        delivery callback, and ours hold this emitter, so an emitter with records in flight would
        keep its producer to the end of the process; and whoever still holds a closed emitter (an
        HTTP framework's handler cache, say) must not keep the producer either."""
        producer, self._producer = self._producer, None
        if producer is None:
            return 0
        dropped = release_producer(producer)
        self.registry.close()
        return dropped


_default: Emitter | None = None
_default_lock = threading.Lock()


def _default_emitter() -> Emitter:
    global _default
    with _default_lock:
        if _default is None:
            _default = Emitter()
            atexit.register(_default.flush)
        return _default


def emit(subject: str, name: str, **fields: Any) -> str:
    """Produce one vigil.Event and wait for the broker's ack; returns the event id.

    Fields: kind ("metric"|"status"|"archive"), severity (0-3), metrics, tags, text, ttl, extended, origin.
    """
    if isinstance(fields.get("kind"), str):
        fields["kind"] = fields["kind"].upper()
    return _default_emitter().emit(subject=subject, name=name, **fields)


def emit_typed(fullname: str, record: dict[str, Any]) -> str:
    """Produce one record of a registered custom type (it must have subject, name and time)."""
    return _default_emitter().emit_typed(fullname, record)


@dataclass
class TailedEvent:
    type: str
    record: dict[str, Any]
    partition: int
    offset: int
    timestamp_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "partition": self.partition, "offset": self.offset, **self.record}


def tail_events(settings: Settings, *, from_beginning: bool = False, subject: str = "*", name: str = "*",
                stop_after_idle_s: float | None = None, errors: list[DecodeError] | None = None,
                on_undecodable: Callable[[DecodeError], None] | None = None,
                notify: Callable[[str], None] | None = None) -> Iterator[TailedEvent]:
    """Decoded events as they arrive (filtered by subject/name globs). Reads without committing (no
    consumer group state).

    Undecodable records (bad framing or body, a schema id the registry does not have) are skipped,
    each reported to `on_undecodable` and kept in `errors` (if given); the DecodeError names the
    topic, partition and offset. While the registry is unavailable the tail waits for it (no record
    is skipped for that), telling `notify` (default: the log) once per outage."""
    registry = RegistryClient.from_settings(settings)
    serde = AvroSerde(registry)
    registry_wait = RegistryWait(notify=notify or log.warning)
    topic = settings.topic(EVENTS_TOPIC)
    consumer = make_consumer(settings, f"vigil-tail-{new_id()}", **{"enable.auto.commit": False})
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise EmitError(f"topic {topic} does not exist: run `vigil topics apply`")
        parts = []
        for p in md.topics[topic].partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, lo if from_beginning else hi))
        consumer.assign(parts)
        match_subject, match_name = glob_matcher(subject), glob_matcher(name)
        idle_since = time.monotonic()
        while True:
            msgs = consumer.consume(500, timeout=0.2)
            if not msgs:
                if stop_after_idle_s is not None and time.monotonic() - idle_since > stop_after_idle_s:
                    return
                continue
            idle_since = time.monotonic()
            for msg in msgs:
                if msg.error():
                    continue
                try:
                    fullname, record = registry_wait.call(partial(serde.decode_typed, msg.value(), topic=msg.topic(),
                                                                  partition=msg.partition(), offset=msg.offset()))
                except DecodeError as exc:
                    if errors is not None:
                        errors.append(exc)
                    if on_undecodable is not None:
                        on_undecodable(exc)
                    continue
                if match_subject(str(record.get("subject", ""))) and match_name(str(record.get("name", ""))):
                    yield TailedEvent(fullname, record, msg.partition(), msg.offset(), msg.timestamp()[1])
    finally:
        consumer.close()
        registry.close()
