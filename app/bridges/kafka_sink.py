"""The EventSink on Kafka: what `vigil bridge http|syslog` hand their events to.

Built on the SDK's Emitter (its producer, Avro serde, registry client and events topic), but with
a delivery report per record instead of the Emitter's shared one, so the HTTP bridge can answer
only once Kafka has a request's events. Nothing here waits on the caller's thread except `flush`:
`produce` only enqueues, and a background thread polls the producer so that delivery reports
arrive even when no more records are sent.

Typed records are checked against the latest registered schema of their record-name subject
before they are queued (the same check and words as MemorySink); a schema is fetched again after
`schema_ttl_s` so new versions are picked up without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from app.bridges.problems import KAFKA, REGISTRY, Problems
from app.bridges.sink import (
    DLQ_TOPIC,
    DeliveryCallback,
    SinkError,
    SinkUnavailable,
    make_dead_letter,
    typed_record,
    unknown_type,
)
from app.config import Settings
from app.model.events import Event, event_key
from app.model.schemas import SchemaFile, SchemaFileError, builtin_schema, parse_schema_text, record_name_subject
from app.model.serde import EncodeError
from app.registry.client import RegistryError, RegistryUnavailable
from app.sdk import EmitError, Emitter

__all__ = ["KafkaEventSink", "make_sink"]

log = logging.getLogger(__name__)

#: Registry error codes meaning "no such subject / version": the sender named an unknown type.
_NOT_REGISTERED = (40401, 40402)
# Delivery failures come in floods when Kafka is away: log one line per interval with the count.
_FAILURE_LOG_INTERVAL_S = 10.0


class KafkaEventSink:
    """EventSink producing to the events topic (Confluent-framed Avro) and the dead-letter topic."""

    def __init__(self, emitter: Emitter, *, schema_ttl_s: float = 60.0, flush_timeout_s: float = 30.0,
                 poll_interval_s: float = 0.1) -> None:
        self.emitter = emitter
        self.dlq_topic = emitter.settings.topic(DLQ_TOPIC)
        self.schema_ttl_s = schema_ttl_s
        self.flush_timeout_s = flush_timeout_s
        self._event_schema = builtin_schema(Event.avro_name)
        self._schemas: dict[str, tuple[SchemaFile, float]] = {}
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self._failures_logged_at = float("-inf")
        self._failures_since_log = 0
        #: why Kafka or the registry failed lately, until they answer again (/healthz)
        self._problems = Problems()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, args=(poll_interval_s,), name="vigil-sink-poll",
                                        daemon=True)
        self._poller.start()

    # -- EventSink -----------------------------------------------------------------------------

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a Vigil event keyed "subject/name"; SinkUnavailable if the producer cannot take it."""
        value = self._encode(event.to_record(), self._event_schema)
        self._produce(self.emitter.topic, event.key.encode(), value, on_delivery)

    def send_typed(self, type_fullname: str, record: dict[str, Any], *,
                   on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a record of a registered type after checking it against the type's latest schema."""
        schema = self._schema(type_fullname)
        checked = typed_record(schema, record)
        value = self._encode(checked, schema)
        key = event_key(str(checked["subject"]), str(checked["name"]))
        self._produce(self.emitter.topic, key.encode(), value, on_delivery)

    def dead_letter(self, source: str, reason: str, raw: bytes, *, detail: str = "",
                    peer: str | None = None) -> None:
        """Queue rejected input for the dead-letter topic; a failure is logged, never raised, since
        the rejection itself was already answered and counted."""
        letter = make_dead_letter(source, reason, raw, detail=detail, peer=peer)
        try:
            self._produce(self.dlq_topic, source.encode(), letter.value, None, headers=letter.headers())
        except SinkUnavailable as exc:
            self._count_failure(f"dead letter from {source} not queued: {exc}")

    def flush(self) -> None:
        """Wait for everything queued; SinkUnavailable if some of it is still not acknowledged after
        `flush_timeout_s`, or could not be delivered (failures reported before this call are not
        repeated: they were answered and counted then)."""
        with self._lock:
            failed_before = self.failed
        try:
            self.emitter.flush(self.flush_timeout_s)
        except EmitError as exc:
            raise self._unavailable(KAFKA, str(exc)) from exc
        with self._lock:
            failed = self.failed - failed_before
        if failed:
            raise SinkUnavailable(f"{failed} record(s) could not be delivered to Kafka at "
                                  f"{self.emitter.settings.kafka_bootstrap} (see the log)")

    # -- lifecycle -----------------------------------------------------------------------------

    def check_ready(self, timeout_s: float = 10.0) -> None:
        """Fail early, with the reason, if the registry cannot take the Event schema, Kafka does not
        answer, or the topics are missing (rather than failing every event later)."""
        try:
            self.emitter.serde.writer(self._event_schema)
        except RegistryUnavailable as exc:  # its message names the registry and the cause
            raise SinkUnavailable(f"cannot register {self._event_schema.fullname}: {exc.message}") from exc
        except RegistryError as exc:
            raise SinkUnavailable(f"cannot register {self._event_schema.fullname} with the schema registry at "
                                  f"{self.emitter.settings.schema_registry_url}: {exc}") from exc
        for topic in (self.emitter.topic, self.dlq_topic):
            try:
                metadata = self.emitter.producer.list_topics(topic, timeout=timeout_s)
            except KafkaException as exc:
                raise SinkUnavailable(f"Kafka at {self.emitter.settings.kafka_bootstrap} did not answer "
                                      f"within {timeout_s:.0f}s: {exc}") from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                raise SinkUnavailable(f"topic {topic} does not exist: run `vigil topics apply`")

    def close(self) -> None:
        """Stop the polling thread and release the producer and the registry client. Does not wait
        for queued records: the bridges `flush()` when they stop (and report what could not be
        delivered); what is still queued now is dropped, each record's delivery callback told so."""
        self._closed.set()
        self._poller.join(5)
        dropped = self.emitter.release()
        if dropped:
            log.warning("%d record(s) not acknowledged by Kafka at %s when the sink closed: dropped", dropped,
                        self.emitter.settings.kafka_bootstrap)

    # -- internals -----------------------------------------------------------------------------

    def _schema(self, type_fullname: str) -> SchemaFile:
        """Latest registered schema of a type, cached for `schema_ttl_s`; an old copy is kept in use
        while the registry is unreachable."""
        now = time.monotonic()
        with self._lock:
            cached = self._schemas.get(type_fullname)
        if cached is not None and now - cached[1] < self.schema_ttl_s:
            return cached[0]
        try:
            latest = self.emitter.registry.version(record_name_subject(type_fullname), "latest")
            schema = parse_schema_text(latest.schema, where=f"registry {type_fullname}")
        except RegistryError as exc:
            if exc.is_not_found() and exc.error_code in _NOT_REGISTERED:
                raise unknown_type(type_fullname) from exc
            if exc.is_retriable() and cached is not None:  # down or overloaded: what we had is still good
                log.warning("using the cached schema of %s: %s", type_fullname, exc)
                return cached[0]
            # The registry's problem, not the sender's: a 503 to retry, never a 4xx or a dead letter.
            raise self._unavailable(REGISTRY, f"cannot fetch the schema of {type_fullname} from the schema "
                                              f"registry: {_registry_problem(exc)}") from exc
        except SchemaFileError as exc:
            raise SinkError(f"the registered schema of {type_fullname} is not a record schema: {exc.reason}",
                            field="type") from exc
        self._problems.cleared(REGISTRY)
        with self._lock:
            self._schemas[type_fullname] = (schema, now)
        return schema

    def _encode(self, record: dict[str, Any], schema: SchemaFile) -> bytes:
        try:
            encoded = self.emitter.serde.encode(record, schema)
        except EncodeError as exc:
            raise SinkError(str(exc)) from exc
        except RegistryError as exc:  # registering the writer schema (first use only)
            raise self._unavailable(REGISTRY, f"cannot register the schema of {schema.fullname} with the schema "
                                              f"registry: {_registry_problem(exc)}", about=schema.fullname) from exc
        self._problems.cleared(REGISTRY, about=schema.fullname)  # its writer is registered now
        return encoded

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: DeliveryCallback | None, *,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                with self._lock:
                    self.delivered += 1
                self._problems.cleared(KAFKA)
                problem = None
            else:
                problem = f"delivery to {msg.topic()} failed: {err.str()}"
                self._count_failure(problem)
            if on_delivery is not None:
                try:
                    on_delivery(problem)
                except Exception:  # an exception here would escape poll() and stop delivery reports
                    log.exception("a delivery callback failed")

        try:
            self.emitter.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
        except BufferError as exc:
            raise self._unavailable(KAFKA, f"the producer queue is full (Kafka at "
                                    f"{self.emitter.settings.kafka_bootstrap} is slow or unreachable): {exc}") from exc
        except KafkaException as exc:
            raise self._unavailable(KAFKA, f"cannot produce to {topic}: {exc}") from exc
        except EmitError as exc:  # the sink is closed: not Kafka's doing
            raise SinkUnavailable(f"cannot produce to {topic}: {exc}") from exc

    def _unavailable(self, dependency: str, problem: str, *, about: str = "") -> SinkUnavailable:
        self._problems.failed(dependency, problem, about=about)
        return SinkUnavailable(problem)

    def problems(self) -> list[str]:
        """Why Kafka or the schema registry failed lately (and for how long), until each answers again."""
        return self._problems.lines()

    def _count_failure(self, problem: str) -> None:
        now = time.monotonic()
        self._problems.failed(KAFKA, problem)
        with self._lock:
            self.failed += 1
            self._failures_since_log += 1
            if now - self._failures_logged_at < _FAILURE_LOG_INTERVAL_S:
                return
            count, self._failures_since_log, self._failures_logged_at = self._failures_since_log, 0, now
        log.error("%d record(s) not delivered (%d in all); latest: %s", count, self.failed, problem)

    def _poll(self, interval_s: float) -> None:
        """Serve delivery reports while the sink is open (produce() alone never triggers them). An
        error must not end the thread: without it no delivery would ever be reported again."""
        while not self._closed.is_set():
            try:
                self.emitter.producer.poll(interval_s)
            except Exception:
                log.exception("serving Kafka delivery reports failed; continuing")
                self._closed.wait(interval_s)


def _registry_problem(exc: RegistryError) -> str:
    """A registry failure in words (an unreachable registry's message already names it)."""
    return exc.message if isinstance(exc, RegistryUnavailable) else str(exc)


def make_sink(settings: Settings, *, check: bool = True) -> KafkaEventSink:
    """The Kafka sink for `settings`; with `check`, SinkUnavailable at once (with the reason) if the
    registry, Kafka or the topics are not there, so a bridge fails at start rather than per event."""
    sink = KafkaEventSink(Emitter(settings))
    if check:
        try:
            sink.check_ready()
        except SinkUnavailable:
            sink.close()
            raise
    return sink
