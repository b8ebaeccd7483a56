"""What the http and tcp beacons share: a probe result and how it becomes a Reading."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.beacons.base import BeaconContext, Reading, Thresholds, graded, report
from app.model.events import Event, Severity

__all__ = ["ProbeResult", "compare_probes", "endpoint_reading"]


@dataclass(frozen=True)
class ProbeResult:
    """One check of an endpoint: how long it took, and what went wrong (None when it answered)."""

    latency_ms: float
    error: str | None = None
    status_code: int | None = None
    bad_status: bool = False  # it answered, with a status code it should not have


def endpoint_reading(name: str, label: str, result: ProbeResult, thresholds: Thresholds,
                     previous: Mapping[str, Reading] | None, *, tags: Mapping[str, str]) -> Reading:
    """down (CRITICAL) when unreachable, status:<code> (CRITICAL) on an unexpected status, else up,
    or slow:warning / slow:critical when the latency crosses a threshold."""
    metrics = {"latency_ms": result.latency_ms, "up": 0.0 if result.error or result.bad_status else 1.0}
    if result.status_code is not None:
        metrics["status_code"] = float(result.status_code)
    if result.error is not None:
        return Reading("down", Severity.CRITICAL, f"{label} is down: {result.error}", tags=tags, metrics=metrics)
    if result.bad_status:
        return Reading(f"status:{result.status_code}", Severity.CRITICAL,
                       f"{label} answered HTTP {result.status_code}", tags=tags, metrics=metrics)
    severity = graded(thresholds, result.latency_ms, previous, name)
    state = "up" if severity == Severity.OK else f"slow:{severity.name.lower()}"
    answered = f" HTTP {result.status_code}" if result.status_code is not None else ""
    text = f"{label} is up{answered} in {result.latency_ms:.0f} ms{thresholds.describe(severity, ' ms')}"
    return Reading(state, severity, text, tags=tags, metrics=metrics)


def compare_probes(ctx: BeaconContext, previous: dict[str, Reading] | None, results: Mapping[str, ProbeResult], *,
                   checks: Sequence[Any], prefix: str, tags_of: Callable[[Any], dict[str, str]],
                   ) -> tuple[list[Event], dict[str, Reading]]:
    """Per check ("http:<label>", "tcp:<label>"): STATUS when its state changes; a METRIC sample
    (latency_ms, up) every run."""
    readings = {}
    for check in checks:
        name = f"{prefix}:{check.label}"
        readings[name] = endpoint_reading(name, check.label, results[check.label],
                                          check.latency_ms.to_thresholds(), previous, tags=tags_of(check))
    return report(ctx, previous, readings)
