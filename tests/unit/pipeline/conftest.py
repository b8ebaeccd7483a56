"""Factories for pipeline unit tests: raw vigil.Event records, normalized events, schema checks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import fastavro
import pytest

from app.model.schemas import builtin_schema
from app.pipeline.validate import NormalizedEvent

#: A fixed "now" for every test (2026-01-01T00:00:00Z): no test reads the wall clock.
NOW_MS = 1_767_225_600_000


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """A vigil.Event-shaped record with test defaults; keyword arguments override fields."""
    ids = itertools.count(1)

    def make(**fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": f"rec-{next(ids)}", "time": NOW_MS, "subject": "web1", "name": "load", "kind": "METRIC",
            "severity": 0, "origin": "test", "text": "", "tags": {}, "metrics": {}, "ttl": None,
            "extended": None, "trace_id": None,
        }
        record.update(fields)
        return record

    return make


@pytest.fixture
def make_event() -> Callable[..., NormalizedEvent]:
    """A NormalizedEvent of identity web1/load; ids are e1, e2, ... unless given."""
    ids: Iterator[int] = itertools.count(1)

    def make(severity: int | None = 0, time_ms: int = NOW_MS, *, ttl_s: float | None = None, id: str | None = None,
             text: str = "", tags: dict[str, str] | None = None, trace_id: str | None = None) -> NormalizedEvent:
        return NormalizedEvent(
            id=id or f"e{next(ids)}", type_name="vigil.Event", subject="web1", name="load", time_ms=time_ms,
            kind="STATUS", severity=severity, metrics={}, ttl_s=ttl_s, text=text, tags=tags or {},
            trace_id=trace_id,
        )

    return make


@pytest.fixture
def assert_valid_record() -> Callable[[str, dict[str, Any]], None]:
    """Check a dict against one of Vigil's Avro schemas (what the producer will enforce)."""

    def check(fullname: str, record: dict[str, Any]) -> None:
        schema = builtin_schema(fullname)
        assert set(record) == set(schema.field_names), f"{fullname} fields differ"
        assert fastavro.validation.validate(record, schema.parsed, raise_errors=True)

    return check
