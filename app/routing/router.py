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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from app.routing.sampling import sample_point
from app.routing.spec import Route
from app.rules.fields import EVENT_TYPE

__all__ = ["CACHE_LIMIT", "BatchCounts", "Decision", "Router", "Sampler", "route_batch", "sample_key", "sampled_in"]

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


class Sampler:
    """sampled_in with the sample points of identities remembered (an identity's point is the
    same for all its events: one dict lookup instead of a hash per event and route)."""

    def __init__(self, cache_limit: int = CACHE_LIMIT) -> None:
        self._points: dict[bytes, int] = {}
        self._cache_limit = cache_limit

    def admits(self, route: Route, key: bytes | None, event: Mapping[str, Any], raw_value: bytes | None) -> bool:
        """Whether a record that matches `route` is in its sample."""
        if route.sample_percent is None:
            return True
        if route.sample_by != "identity":
            event_id = event.get("id")
            data = event_id.encode() if type(event_id) is str and event_id else sample_key(route, key, event, raw_value)
            return sample_point(data) < route.sample_below
        if key is None:
            return sample_point(sample_key(route, key, event, raw_value)) < route.sample_below
        point = self._points.get(key)
        if point is None:
            if len(self._points) >= self._cache_limit:
                self._points.clear()
            point = self._points[key] = sample_point(key)
        return point < route.sample_below


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
        #: whether decisions of vigil.Event records are cached by their field values
        self.caches = all(_repeats(k) for k in self.fields)
        self._key = _key_function(self.fields) if self.caches else None
        self._cache: dict[tuple[Any, ...], tuple[Route, ...]] = {}
        self._cache_limit = cache_limit

    def __bool__(self) -> bool:
        return bool(self.routes)

    def matching(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """The enabled routes whose match accepts the event, in definition order (before sampling)."""
        # The schema fixes the types of vigil.Event fields, so equal values mean equal decisions
        # (custom types could hold 1 in one record and True in another, which hash alike).
        if self._key is None or event_type != EVENT_TYPE:
            return self._evaluate(event, event_type)
        try:
            key = self._key(event)
        except (KeyError, AttributeError, TypeError):  # a field the record lacks, tags not a map: no shortcut
            return self._evaluate(event, event_type)
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
               raw_value: bytes | None, sampler: Sampler | None = None) -> Decision:
        """Where the event goes after sampling (what the stage does, for tools and tests)."""
        admits = (sampler or Sampler()).admits
        taken: list[Route] = []
        out: list[Route] = []
        for route in self.matching(event, event_type):
            (taken if admits(route, key, event, raw_value) else out).append(route)
        return Decision(tuple(taken), tuple(out))


def _key_function(fields: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """The cache key of a vigil.Event: the values of `fields` (top-level ones by one itemgetter, in
    C; tags from the tags map, None when absent: tag values are strings). `type` is not read: only
    vigil.Event records are cached. Raises KeyError for a record without one of the top-level fields."""
    top = tuple(f for f in fields if f in _REPEATING and f != "type")
    tags = tuple(f[len("tags."):] for f in fields if f.startswith("tags."))
    get_top: Callable[[Mapping[str, Any]], Any] = itemgetter(*top) if top else (lambda _: None)
    if not tags:
        return get_top
    if len(tags) == 1:
        (tag,) = tags
        return lambda event: (get_top(event), event["tags"].get(tag))
    return lambda event: (get_top(event), tuple([event["tags"].get(t) for t in tags]))


@dataclass
class BatchCounts:
    """What route_batch did, per route: copies sent, left out by the sample, not sent (missing topic)."""

    routed: dict[Route, int]
    sampled_out: dict[Route, int]
    missing: dict[Route, int]


def route_batch(router: Router, sampler: Sampler, records: list[Any], missing_topics: frozenset[str],
                forward: Callable[[str, list[Any]], None]) -> BatchCounts:
    """Route a batch of consumed records (the engine's InRecords: value decoded, raw key and value,
    headers, timestamp): `forward(topic, records)` once per route that takes any, with the records
    it takes in batch order, except to `missing_topics` (counted). The stage's per-event loop, here
    so that it is compiled with the router (app.native)."""
    taken: dict[Route, list[Any]] = {}
    left_out: dict[Route, int] = {}
    dropped: dict[Route, int] = {}
    matching = router.matching
    admits = sampler.admits
    for r in records:
        value = r.value
        if type(value) is not dict:
            continue  # not an event (the pipeline dead-letters it)
        type_name = r.type_name
        matched = matching(value, type_name if type_name is not None else EVENT_TYPE)
        if not matched:
            continue
        for route in matched:
            if route.sample_percent is not None and not admits(route, r.raw_key, value, r.raw_value):
                left_out[route] = left_out.get(route, 0) + 1
                continue
            copies = taken.get(route)
            if copies is None:
                copies = taken[route] = []
            copies.append(r)
    routed: dict[Route, int] = {}
    for route, copies in taken.items():
        if route.to in missing_topics:
            dropped[route] = len(copies)
        else:
            forward(route.to, copies)
            routed[route] = len(copies)
    return BatchCounts(routed, left_out, dropped)
