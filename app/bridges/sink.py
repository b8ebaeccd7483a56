"""Where bridges hand their events: the EventSink protocol, and an in-memory sink for tests.

The Kafka-backed sink lives elsewhere and implements the same protocol; bridges never import a
Kafka client. Sinks are called from the bridge's event loop, so `send` and `send_typed` must not
block for long (a Kafka producer's `produce` only enqueues; `flush` is where waiting happens).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from app.model.events import Event
from app.model.schemas import SchemaFile

__all__ = ["EventSink", "MemorySink", "SinkError", "schema_mismatch"]


class SinkError(Exception):
    """A record was refused by the sink; `field` names the part of the record that is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


@runtime_checkable
class EventSink(Protocol):
    """What every bridge needs from the event bus."""

    def send(self, event: Event) -> None:
        """Queue a Vigil event for the `events` topic."""

    def send_typed(self, type_fullname: str, record: dict[str, Any]) -> None:
        """Queue a record of a registered type; raise SinkError naming the field if it does not match
        the registered schema (or SinkError with field "type" if no such type is registered)."""

    def flush(self) -> None:
        """Wait until everything queued so far has been delivered."""


def schema_mismatch(schema: SchemaFile, record: Mapping[str, Any]) -> SinkError | None:
    """Check a record against an Avro record schema; a SinkError naming the first bad field, or None.

    Shared with the Kafka sink so both report mismatches in the same words. Fields the schema does
    not have are a mismatch too: they would be silently dropped by the Avro writer.
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


class MemorySink:
    """Keeps everything in lists; validates typed records against the schemas it was given.

    `listeners` are called (with no arguments) after every accepted record, so an async test can
    wake up and check its condition instead of sleeping.
    """

    def __init__(self, schemas: Mapping[str, SchemaFile] | None = None) -> None:
        self.schemas = dict(schemas or {})
        self.events: list[Event] = []
        self.typed: list[tuple[str, dict[str, Any]]] = []
        self.flushes = 0
        self.listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        """Keep a Vigil event."""
        with self._lock:
            self.events.append(event)
        self._notify()

    def send_typed(self, type_fullname: str, record: dict[str, Any]) -> None:
        """Keep a typed record if it matches its registered schema, else raise SinkError."""
        schema = self.schemas.get(type_fullname)
        if schema is None:
            raise SinkError(f"no registered record type named {type_fullname!r}", field="type")
        problem = schema_mismatch(schema, record)
        if problem is not None:
            raise problem
        with self._lock:
            self.typed.append((type_fullname, dict(record)))
        self._notify()

    def flush(self) -> None:
        """Nothing to wait for; counted so tests can see that a bridge flushed on shutdown."""
        self.flushes += 1

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()
