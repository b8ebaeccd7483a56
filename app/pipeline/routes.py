"""The pipeline's queries on the worker HTTP API (each worker answers for its own partitions; the
CLI merges the answers of several workers):

    GET /status?subject=GLOB&name=GLOB&state=STATE          -> {"statuses": [...], "partitions": [...]}
    GET /windows?subject=S&name=N&metric=M&window=10s&last=N -> {"windows": [...], "partitions": [...]}
    GET /events/get?id=ID                                    -> {"event": {...}} or 404
    GET /events/find?subject=GLOB&name=GLOB&since_ms=&until_ms=&limit=N -> {"events": [...], ...}
    GET /pipeline/stats                                      -> rejected / late / misrouted counts

Durations (`window`) are "10s"-style or plain ms. Bad parameters answer 400 with the reason.
(Not /metrics: the worker serves its Prometheus metrics there.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from app.durations import format_duration_ms
from app.model.events import State
from app.pipeline.query import QueryError, duration_param, int_param, text_param
from app.runtime.http import Route

if TYPE_CHECKING:
    from app.pipeline.agents import Pipeline

__all__ = ["DEFAULT_FIND_LIMIT", "DEFAULT_FIND_SINCE_MS", "DEFAULT_METRIC_WINDOWS", "pipeline_routes"]

DEFAULT_FIND_SINCE_MS: Final = 3_600_000
DEFAULT_FIND_LIMIT: Final = 100
MAX_FIND_LIMIT: Final = 100_000
DEFAULT_METRIC_WINDOWS: Final = 10
_STATES: Final = tuple(s.value for s in State)

Query = dict[str, list[str]]


def _answering(handler: Callable[[Query], Any]) -> Route:
    """A route handler: the body on success, 400 with the reason for a bad parameter."""

    def run(query: Query) -> tuple[int, Any]:
        try:
            return 200, handler(query)
        except QueryError as exc:
            return 400, {"error": str(exc)}

    run.__doc__ = handler.__doc__
    return run


def _required(query: Query, name: str) -> str:
    value = text_param(query, name)
    if value is None:
        raise QueryError(f"parameter {name} is required")
    return value


def pipeline_routes(pipeline: Pipeline) -> dict[str, Route]:
    """The HTTP routes that query `pipeline`'s tables (path -> handler; see app.runtime.http.route)."""
    partitions = lambda: sorted(pipeline.tracker.table.stores)  # noqa: E731

    @_answering
    def status(query: Query) -> dict[str, Any]:
        """Current statuses of matching identities."""
        state = text_param(query, "state")
        if state is not None and state.upper() not in _STATES:
            raise QueryError(f"state={state!r}: use one of {', '.join(_STATES)}")
        found = pipeline.tracker.statuses(subject=text_param(query, "subject") or "*",
                                          name=text_param(query, "name") or "*", state=state.upper() if state else None)
        return {"statuses": found, "partitions": partitions()}

    @_answering
    def windows(query: Query) -> dict[str, Any]:
        """Open and recent windows of one identity's metrics."""
        size_ms = duration_param(query, "window")
        if size_ms is not None and size_ms not in pipeline.tracker.sizes_ms:
            sizes = ", ".join(format_duration_ms(s) for s in pipeline.tracker.sizes_ms)
            raise QueryError(f"window={text_param(query, 'window')}: the configured window sizes are {sizes}")
        found = pipeline.tracker.windows(subject=_required(query, "subject"), name=_required(query, "name"),
                                         metric=text_param(query, "metric"), size_ms=size_ms,
                                         last=int_param(query, "last", DEFAULT_METRIC_WINDOWS, minimum=0))
        return {"windows": found, "partitions": partitions()}

    def get_event(query: Query) -> tuple[int, Any]:
        """Where the event with this id is (partition, offset, time, type, identity)."""
        event_id = text_param(query, "id")
        if event_id is None:
            return 400, {"error": "parameter id is required"}
        found = pipeline.archive.lookup(event_id)
        if found is None:
            return 404, {"error": f"event {event_id} is not in the index of partitions {partitions()}",
                         "partitions": partitions()}
        return 200, {"event": found.to_json(pipeline.agent.topic), "partitions": partitions()}

    @_answering
    def find_events(query: Query) -> dict[str, Any]:
        """Indexed events of matching identities in a time range, newest first."""
        now_ms = int(time.time() * 1000)
        since_ms = int_param(query, "since_ms", now_ms - DEFAULT_FIND_SINCE_MS)
        until_ms = int_param(query, "until_ms", now_ms + pipeline.max_future_ms)
        limit = int_param(query, "limit", DEFAULT_FIND_LIMIT, minimum=1)
        subject, name = text_param(query, "subject") or "*", text_param(query, "name") or "*"
        found = pipeline.find_events(subject=subject, name=name, since_ms=since_ms, until_ms=until_ms,
                                     limit=min(limit, MAX_FIND_LIMIT))
        return {"events": [f.to_json(pipeline.agent.topic) for f in found], "partitions": partitions()}

    return {"/status": status, "/windows": windows, "/events/get": get_event, "/events/find": find_events,
            "/pipeline/stats": lambda query: (200, pipeline.stats())}
