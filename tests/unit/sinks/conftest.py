"""Closed windows to feed the sinks' unit tests."""

from __future__ import annotations

from typing import Any

from app.sinks.windows import AGGREGATES, ClosedWindow


def window_record(subject: str = "web1", name: str = "load", metric: str = "load1", *, start_ms: int = 0,
                  size_ms: int = 10_000, value: float = 1.5, quantiles: bool = True) -> dict[str, Any]:
    """A vigil.WindowAggregate as the pipeline publishes it (every aggregate = `value`, count 3)."""
    record: dict[str, Any] = {"subject": subject, "name": name, "metric": metric, "window_start": start_ms,
                              "window_end": start_ms + size_ms, "size_ms": size_ms, "count": 3,
                              "sum": value * 3, "min": value, "max": value, "mean": value, "last": value,
                              "p50": None, "p95": None, "p99": None, "sketch": None}
    if quantiles:
        record.update(p50=value, p95=value, p99=value)
    return record


def window(subject: str = "web1", name: str = "load", metric: str = "load1", *, start_ms: int = 0,
           size_ms: int = 10_000, value: float = 1.5) -> ClosedWindow:
    return ClosedWindow.from_record(window_record(subject, name, metric, start_ms=start_ms, size_ms=size_ms,
                                                  value=value))


ALL = AGGREGATES
