"""What the built-in pipeline must make of a sequence of events, computed without it: alerts and
final statuses by folding the events per identity, in order (app.pipeline.status)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.model.events import Event
from app.pipeline.config import PipelineConfig
from app.pipeline.status import StatusState, fold_status
from app.pipeline.validate import normalize_event

__all__ = ["reference", "reference_records"]


def reference_records(records: Iterable[tuple[dict[str, Any], str]]) -> tuple[list[dict[str, Any]],
                                                                              dict[str, StatusState]]:
    """Alerts and final statuses (by identity "subject/name") of (record, record type) pairs."""
    flap = PipelineConfig().flap_policy
    states: dict[str, StatusState] = {}
    alerts = []
    for record, type_name in records:
        normalized = normalize_event(record, type_name, now_ms=record["time"], max_future_ms=1)
        key = f"{record['subject']}/{record['name']}"
        update = fold_status(states.get(key), normalized, flap=flap)
        states[key] = update.state
        if update.alert:
            alerts.append(update.alert)
    return alerts, states


def reference(events: list[Event]) -> tuple[list[dict[str, Any]], dict[str, StatusState]]:
    """Alerts and final statuses of vigil.Event records."""
    return reference_records((ev.to_record(), "vigil.Event") for ev in events)
