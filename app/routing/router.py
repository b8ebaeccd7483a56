"""Which routes an event takes, at pipeline speed.

A route's decision depends only on the fields its match reads. For vigil.Event records whose routes
read only fields that repeat from event to event (subject, name, kind, origin, severity, type,
tags.*), the matching routes are cached by the values of exactly those fields: a stream of 10,000
identities costs one dict lookup per event instead of one match per route. Routes that read
changing fields (metrics.*, time, id, text, data.*) are matched event by event (routes whose match
names literal event names only for events of those names). What a record then needs is cached
as a Plan by those values and the record's Kafka key (when a route samples by identity: the
key's sample point never changes), so a record of a known identity costs one lookup, an append
per route taking it, and a hash per route sampling by event id (app.routing.sampling; never
cached: every event id is new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from app.routing.sampling import sample_point
from app.routing.spec import Route
from app.rules.fields import EVENT_TYPE

__all__ = ["CACHE_LIMIT", "BatchCounts", "Decision", "Plan", "Router", "route_batch", "sample_key", "sampled_in"]

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


@dataclass(frozen=True, eq=False)
class Plan:
    """What is left to decide for one record, as indexes into Router.routes: the routes that take
    it (matching, and in their identity sample if they sample by identity), the matching routes
    whose identity sample leaves it out, and the matching routes sampled by event id (decided per
    record). Cached per field values and Kafka key: a record of a known identity costs one lookup."""

    taken: tuple[int, ...]
    identity_out: tuple[int, ...]
    by_event: tuple[int, ...]


_NOTHING: Final = Plan((), (), ())


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
        self._index = {route: i for i, route in enumerate(self.routes)}
        #: whether a plan depends on the Kafka key (some route samples by identity)
        self._by_identity = any(r.sample_percent is not None and r.sample_by == "identity" for r in self.routes)
        self._plans: dict[Any, Plan] = {}

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
        return self._matching_by(key, event, event_type)

    def _matching_by(self, fields: Any, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """`matching` once the record's cache key (its `fields` values) is known."""
        cache = self._cache
        hit = cache.get(fields)
        if hit is None:
            hit = self._evaluate(event, event_type)
            if len(cache) >= self._cache_limit:
                cache.clear()
            cache[fields] = hit
        return hit

    def _evaluate(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        name = event.get("name")
        return tuple(r for r in self.routes if (r.names is None or name in r.names) and r.match(event, event_type))

    def plan(self, event: Mapping[str, Any], event_type: str, key: bytes | None) -> Plan:
        """The routes the record takes or is sampled out of, but for samples by event id (left to
        decide per record): cached like `matching`, and by Kafka key too when a route samples by
        identity (a record without a key is sampled by subject/name: not cached)."""
        if self._key is None or event_type != EVENT_TYPE or (key is None and self._by_identity):
            return self._plan_of(self._evaluate(event, event_type), key, event)
        try:
            fields = self._key(event)
        except (KeyError, AttributeError, TypeError):  # as in matching: no shortcut
            return self._plan_of(self._evaluate(event, event_type), key, event)
        cache_key = (fields, key) if self._by_identity else fields
        plans = self._plans
        hit = plans.get(cache_key)
        if hit is None:
            hit = self._plan_of(self._matching_by(fields, event, event_type), key, event)
            if len(plans) >= self._cache_limit:
                plans.clear()
            plans[cache_key] = hit
        return hit

    def _plan_of(self, matched: tuple[Route, ...], key: bytes | None, event: Mapping[str, Any]) -> Plan:
        if not matched:
            return _NOTHING
        taken: list[int] = []
        out: list[int] = []
        by_event: list[int] = []
        for route in matched:
            i = self._index[route]
            if route.sample_percent is None:
                taken.append(i)
            elif route.sample_by != "identity":
                by_event.append(i)
            elif sampled_in(route, key, event, None):
                taken.append(i)
            else:
                out.append(i)
        return Plan(tuple(taken), tuple(out), tuple(by_event))

    def decide(self, event: Mapping[str, Any], event_type: str, key: bytes | None,
               raw_value: bytes | None) -> Decision:
        """Where the event goes after sampling, in definition order (what the stage does, for tools
        and tests)."""
        plan = self.plan(event, event_type, key)
        taken = list(plan.taken)
        out = list(plan.identity_out)
        for i in plan.by_event:
            (taken if sampled_in(self.routes[i], key, event, raw_value) else out).append(i)
        return Decision(tuple(self.routes[i] for i in sorted(taken)), tuple(self.routes[i] for i in sorted(out)))


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


def route_batch(router: Router, records: list[Any], missing_topics: frozenset[str],
                forward: Callable[[str, list[Any]], None]) -> BatchCounts:
    """Route a batch of consumed records (the engine's InRecords: value decoded, raw key and value,
    headers, timestamp): `forward(topic, records)` once per route that takes any, with the records
    it takes in batch order, except to `missing_topics` (counted). The stage's per-event loop, here
    so that it is compiled with the router (app.native): per record one cached plan, an append per
    route taking it, and a hash per route sampling by event id."""
    routes = router.routes
    copies: list[list[Any]] = [[] for _ in routes]
    left_out = [0] * len(routes)
    plan_of = router.plan
    for r in records:
        value = r.value
        if type(value) is not dict:
            continue  # not an event (the pipeline dead-letters it)
        type_name = r.type_name
        plan = plan_of(value, type_name if type_name is not None else EVENT_TYPE, r.raw_key)
        if plan is _NOTHING:
            continue
        for i in plan.taken:
            copies[i].append(r)
        for i in plan.identity_out:
            left_out[i] += 1
        for i in plan.by_event:
            if sampled_in(routes[i], r.raw_key, value, r.raw_value):
                copies[i].append(r)
            else:
                left_out[i] += 1
    routed: dict[Route, int] = {}
    sampled_out: dict[Route, int] = {}
    dropped: dict[Route, int] = {}
    for i, route in enumerate(routes):
        if left_out[i]:
            sampled_out[route] = left_out[i]
        taken = copies[i]
        if not taken:
            continue
        if route.to in missing_topics:
            dropped[route] = len(taken)
        else:
            forward(route.to, taken)
            routed[route] = len(taken)
    return BatchCounts(routed, sampled_out, dropped)
