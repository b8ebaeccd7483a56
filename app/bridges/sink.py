"""Where bridges hand their events: the EventSink protocol, and an in-memory sink for tests.

The Kafka-backed sink (`app.bridges.kafka_sink`) implements the same protocol; bridges never import
a Kafka client. Sinks do not wait for the bus when sending: `send`/`send_typed` queue a record and
report its delivery later through `on_delivery`, possibly from another thread; `flush` is where
waiting happens. (`send_typed` may fetch a schema from the registry on first use, which is why
the HTTP bridge sends from a worker thread.)
`BatchDelivery` turns those reports into one awaitable per request, so the HTTP bridge answers 2xx
only once Kafka has the events.

Rejected input goes to the dead-letter topic through `dead_letter`: one record per rejected
request or message, its raw bytes cut to `MAX_DEAD_LETTER_BYTES`, with headers naming the source,
the reason and what was wrong (see `DeadLetter.headers`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from app.model.events import Event, now_ms
from app.model.ids import new_id
from app.model.schemas import SchemaFile

__all__ = [
    "DLQ_TOPIC",
    "MAX_DEAD_LETTER_BYTES",
    "BatchDelivery",
    "DeadLetter",
    "DeliveryCallback",
    "EventSink",
    "MemorySink",
    "SinkError",
    "SinkUnavailable",
    "make_dead_letter",
    "schema_mismatch",
    "typed_record",
    "unknown_type",
]

#: Logical topic (before the topic prefix) of rejected bridge input; the runtime uses it too.
DLQ_TOPIC = "events-dlq"
#: Raw input kept in a dead letter. Below Kafka's default 1 MB message limit with room for headers,
#: and enough to see what a sender got wrong; the `vigil.size` header keeps the original size.
MAX_DEAD_LETTER_BYTES = 262_144
# Error text in headers: enough for every rejected item of a typical batch, bounded for huge ones.
_MAX_DETAIL_CHARS = 4000
#: Fields every record on the events topic needs (identity and time).
EVENT_FIELDS = ("subject", "name", "time")

#: Told once per record whether it reached the bus: None when it did, else why not (text for people).
DeliveryCallback = Callable[[str | None], None]


class SinkError(Exception):
    """A record was refused by the sink; `field` names the part of the record that is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class SinkUnavailable(Exception):
    """The bus (or the schema registry) cannot take records now: not the sender's fault, retry later."""


@dataclass(frozen=True)
class DeadLetter:
    """One rejected request or message, as written to the dead-letter topic."""

    source: str  # "http/<endpoint>" or "syslog/<udp|tcp>"
    reason: str  # the short counter label, e.g. "invalid", "not_utf8"
    detail: str  # what was wrong, for people (bounded)
    value: bytes  # the raw input, cut to MAX_DEAD_LETTER_BYTES
    size: int  # the raw input's original size in bytes
    peer: str | None = None

    @property
    def truncated(self) -> bool:
        """True when `value` is only the beginning of the input."""
        return len(self.value) < self.size

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers, `vigil.*` like the runtime's dead letters."""
        headers = [("vigil.source", self.source.encode()), ("vigil.reason", self.reason.encode()),
                   ("vigil.error", self.detail.encode("utf-8", "replace")), ("vigil.size", str(self.size).encode())]
        if self.truncated:
            headers.append(("vigil.truncated", b"true"))
        if self.peer:
            headers.append(("vigil.peer", self.peer.encode("utf-8", "replace")))
        return headers


def make_dead_letter(source: str, reason: str, raw: bytes, *, detail: str = "", peer: str | None = None,
                     ) -> DeadLetter:
    """A DeadLetter with the input and the detail cut to their bounds (one place for every sink)."""
    if len(detail) > _MAX_DETAIL_CHARS:
        detail = detail[:_MAX_DETAIL_CHARS - 1] + "…"
    return DeadLetter(source=source, reason=reason, detail=detail or reason, value=bytes(raw[:MAX_DEAD_LETTER_BYTES]),
                      size=len(raw), peer=peer)


@runtime_checkable
class EventSink(Protocol):
    """What every bridge needs from the event bus.

    Implementations are thread-safe: the HTTP bridge sends from worker threads, the syslog bridge
    from its event loop. `on_delivery`, when given, is called exactly once per record that `send`/`send_typed` queued
    (never when they raise): with None once the bus has the record, or with the reason it could not
    be delivered. It may be called from another thread, before or after the send returns.
    """

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a Vigil event for the `events` topic; SinkUnavailable if the bus cannot take it."""

    def send_typed(self, type_fullname: str, record: dict[str, Any], *,
                   on_delivery: DeliveryCallback | None = None) -> None:
        """Queue a record of a registered type; raise SinkError naming the field if it does not match
        the registered schema (or SinkError with field "type" if no such type is registered)."""

    def dead_letter(self, source: str, reason: str, raw: bytes, *, detail: str = "",
                    peer: str | None = None) -> None:
        """Queue rejected input for the dead-letter topic (see `make_dead_letter`); never raises."""

    def flush(self) -> None:
        """Wait until everything queued so far has been delivered."""

    def problems(self) -> list[str]:
        """Why the bus cannot take or deliver events right now ([] when it can), for /healthz."""


def unknown_type(type_fullname: str) -> SinkError:
    """The error for a `type` that names no registered record (same words in every sink)."""
    return SinkError(f"no registered record type named {type_fullname!r} "
                     f"(register its .avsc with `vigil schemas register` first)", field="type")


def schema_mismatch(schema: SchemaFile, record: Mapping[str, Any]) -> SinkError | None:
    """Check a record against an Avro record schema; a SinkError naming the first bad field, or None.

    Fields the schema does not have are a mismatch too: they would be silently dropped by the Avro
    writer.
    """
    known = set(schema.field_names)
    for key in record:
        if key not in known:
            return SinkError(f"is not a field of {schema.fullname}", field=str(key))
    try:
        avro_validate(dict(record), schema.parsed, raise_errors=True)
    except AvroValidationError as exc:
        details = getattr(exc, "errors", None) or []
        first = details[0] if details else None
        field = getattr(first, "field", None) or ""
        # fastavro names fields "<record fullname>.<field>"; the sender knows only "<field>".
        field = field.removeprefix(f"{schema.fullname}.")
        expected = getattr(first, "schema", None)
        got = getattr(first, "datum", None)
        if field and field not in record:
            return SinkError(f"missing (required by {schema.fullname})", field=field)
        return SinkError(f"does not match schema {schema.fullname}: expected {expected}, got {got!r:.60}",
                         field=field or None)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return SinkError(f"does not match schema {schema.fullname}: {exc}")
    return None


def typed_record(schema: SchemaFile, record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as a sink writes it, or SinkError naming the field that is wrong.

    Like `Emitter.emit_typed`: the type must have subject, name and time to travel on the events
    topic; a missing `time` is the time of receipt and a missing `id` (if the type has one) a new id.
    """
    missing = [name for name in EVENT_FIELDS if name not in schema.field_names]
    if missing:
        raise SinkError(f"{schema.fullname} lacks field(s) {', '.join(missing)}: events need subject, name "
                        f"and time", field="type")
    out = dict(record)
    out.setdefault("time", now_ms())
    if "id" in schema.field_names:
        out.setdefault("id", new_id())
    problem = schema_mismatch(schema, out)
    if problem is not None:
        raise problem
    return out


class BatchDelivery:
    """Collects the delivery reports of one batch and lets a coroutine await them all.

    Use `report` as every record's `on_delivery` and call `sent()` after each send that returned
    (reports may come first, from any thread: the count only has to balance once `wait` is called).
    Made on the event loop that will wait.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._lock = threading.Lock()
        self._outstanding = 0
        self._closed = False
        self.sent_count = 0
        self.delivered = 0
        self.failures: list[str] = []

    def sent(self) -> None:
        """One more record is on its way."""
        with self._lock:
            self._outstanding += 1
            self.sent_count += 1

    def report(self, error: str | None) -> None:
        """A DeliveryCallback: one record arrived (None) or failed (why)."""
        with self._lock:
            self._outstanding -= 1
            if error is None:
                self.delivered += 1
            else:
                self.failures.append(error)
            finished = self._closed and self._outstanding == 0
        if finished:
            try:
                self._loop.call_soon_threadsafe(self._finish)
            except RuntimeError:  # the loop is gone (the bridge stopped): nobody waits any more
                pass

    @property
    def outstanding(self) -> int:
        """Records sent and not yet reported."""
        with self._lock:
            return self._outstanding

    async def wait(self, timeout_s: float) -> bool:
        """Wait until every sent record was reported; False if some were not within `timeout_s`."""
        with self._lock:
            self._closed = True
            finished = self._outstanding == 0
        if finished:
            self._finish()
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout_s)
        except TimeoutError:
            return False
        return True

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


class MemorySink:
    """Keeps everything in lists; validates typed records against the schemas it was given.

    Every record is "delivered" at once. `listeners` are called (with no arguments) after every
    accepted record and dead letter, so an async test can wake up and check its condition instead of
    sleeping.
    """

    def __init__(self, schemas: Mapping[str, SchemaFile] | None = None) -> None:
        self.schemas = dict(schemas or {})
        self.events: list[Event] = []
        self.typed: list[tuple[str, dict[str, Any]]] = []
        self.dead_letters: list[DeadLetter] = []
        self.flushes = 0
        self.listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        """Keep a Vigil event."""
        with self._lock:
            self.events.append(event)
        self._delivered(on_delivery)

    def send_typed(self, type_fullname: str, record: dict[str, Any], *,
                   on_delivery: DeliveryCallback | None = None) -> None:
        """Keep a typed record if it matches its registered schema, else raise SinkError."""
        schema = self.schemas.get(type_fullname)
        if schema is None:
            raise unknown_type(type_fullname)
        kept = typed_record(schema, record)
        with self._lock:
            self.typed.append((type_fullname, kept))
        self._delivered(on_delivery)

    def dead_letter(self, source: str, reason: str, raw: bytes, *, detail: str = "",
                    peer: str | None = None) -> None:
        """Keep a dead letter (bounded as the Kafka sink would write it)."""
        with self._lock:
            self.dead_letters.append(make_dead_letter(source, reason, raw, detail=detail, peer=peer))
        self._notify()

    def flush(self) -> None:
        """Nothing to wait for; counted so tests can see that a bridge flushed on shutdown."""
        self.flushes += 1

    def problems(self) -> list[str]:
        """Never any: every record is delivered at once."""
        return []

    def _delivered(self, on_delivery: DeliveryCallback | None) -> None:
        if on_delivery is not None:
            on_delivery(None)
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()
