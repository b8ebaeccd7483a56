"""Which routes an event takes, at pipeline speed.

A route's decision depends only on the fields its match reads. For vigil.Event records whose routes
read only fields that repeat from event to event (subject, name, kind, origin, severity, type,
tags.*), the matching routes are cached by the values of exactly those fields: a stream of 10,000
identities costs one dict lookup per event instead of one match per route. Routes that read
changing fields (metrics.*, time, id, text, data.*) are matched event by event (routes whose match
names literal event names only for events of those names). The sample decision is per record
(app.routing.sampling) and never cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.routing.sampling import sample_point
from app.routing.spec import Route
from app.rules.fields import EVENT_TYPE

__all__ = ["CACHE_LIMIT", "Decision", "Router", "sample_key", "sampled_in"]

#: Distinct field-value combinations cached per router (past it, the cache starts again).
CACHE_LIMIT: Final = 200_000
#: Fields whose values repeat across an identity's events (worth caching decisions on).
_REPEATING: Final = frozenset({"subject", "name", "kind", "origin", "severity", "type", "from_state", "to_state"})


def _repeats(key: str) -> bool:
    return key in _REPEATING or key.startswith("tags.")


def sample_key(route: Route, key: bytes | None, event: Mapping[str, Any], raw_value: bytes | None) -> bytes:
    """The bytes a record's sample point is computed from: its identity (the Kafka key, else
    `subject/name`) or its event id (records without one: their consumed bytes)."""
    if route.sample_by == "identity":
        if key is not None:
            return key
        return f"{event.get('subject', '')}/{event.get('name', '')}".encode()
    event_id = event.get("id")
    if isinstance(event_id, str) and event_id:
        return event_id.encode()
    return raw_value or b""


def sampled_in(route: Route, key: bytes | None, event: Mapping[str, Any], raw_value: bytes | None) -> bool:
    """Whether a record that matches `route` is in its sample (always, for a route without one)."""
    if route.sample_percent is None:
        return True
    return sample_point(sample_key(route, key, event, raw_value)) < route.sample_below


@dataclass(frozen=True)
class Decision:
    """Where one event goes: the routes that copy it, and the matching routes whose sample left it out."""

    taken: tuple[Route, ...]
    sampled_out: tuple[Route, ...]


class Router:
    """The enabled routes of a route set, ready to decide events."""

    def __init__(self, routes: Iterable[Route], *, cache_limit: int = CACHE_LIMIT) -> None:
        self.routes: tuple[Route, ...] = tuple(r for r in routes if r.enabled)
        refs = {f.key: f for r in self.routes for f in r.fields}
        self.fields = tuple(sorted(refs))
        self._getters = tuple(refs[k].get for k in self.fields)
        #: whether decisions of vigil.Event records are cached by their field values
        self.caches = all(_repeats(k) for k in self.fields)
        self._cache: dict[tuple[Any, ...], tuple[Route, ...]] = {}
        self._cache_limit = cache_limit

    def __bool__(self) -> bool:
        return bool(self.routes)

    def matching(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """The enabled routes whose match accepts the event, in definition order (before sampling)."""
        # The schema fixes the types of vigil.Event fields, so equal values mean equal decisions
        # (custom types could hold 1 in one record and True in another, which hash alike).
        if not self.caches or event_type != EVENT_TYPE:
            return self._evaluate(event, event_type)
        key = tuple([get(event, event_type) for get in self._getters])
        cache = self._cache
        hit = cache.get(key)
        if hit is None:
            hit = self._evaluate(event, event_type)
            if len(cache) >= self._cache_limit:
                cache.clear()
            cache[key] = hit
        return hit

    def _evaluate(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        name = event.get("name")
        return tuple(r for r in self.routes if (r.names is None or name in r.names) and r.match(event, event_type))

    def decide(self, event: Mapping[str, Any], event_type: str, key: bytes | None,
               raw_value: bytes | None) -> Decision:
        """Where the event goes after sampling (what the stage does, for tools and tests)."""
        taken: list[Route] = []
        out: list[Route] = []
        for route in self.matching(event, event_type):
            (taken if sampled_in(route, key, event, raw_value) else out).append(route)
        return Decision(tuple(taken), tuple(out))
