"""Which routes an event takes, at pipeline speed.

A route's decision depends only on the fields its match reads. For vigil.Event records whose routes
read only fields that repeat from event to event (subject, name, kind, origin, severity, type,
tags.*), the matching routes are cached by the values of exactly those fields: a stream of 10,000
identities costs one dict lookup per event instead of one match per route. Routes that read
changing fields (metrics.*, time, id, text, data.*) are matched event by event (routes whose match
names literal event names only for events of those names). What a record then needs is cached
as a Plan by those values and the record's Kafka key (when a route samples by identity: the
key's sample point never changes), so a record of a known identity costs one lookup, an append
per route taking it, and one hash of its event id when a route samples by it (app.routing.sampling;
never cached: every event id is new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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
        #: the cache key's top-level fields (`type` is not read: only vigil.Event records are
        #: cached) and tags, in that order
        self._top = tuple(f for f in self.fields if f in _REPEATING and f != "type")
        self._tags = tuple(f[len("tags."):] for f in self.fields if f.startswith("tags."))
        self._cache: dict[tuple[Any, ...], tuple[Route, ...]] = {}
        self._cache_limit = cache_limit
        self._index = {route: i for i, route in enumerate(self.routes)}
        #: whether a plan depends on the Kafka key (some route samples by identity)
        self._by_identity = any(r.sample_percent is not None and r.sample_by == "identity" for r in self.routes)
        self._plans: dict[tuple[Any, ...], Plan] = {}
        #: one string object per distinct value in the caches' keys (see _shared)
        self._strings: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.routes)

    def matching(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """The enabled routes whose match accepts the event, in definition order (before sampling)."""
        # The schema fixes the types of vigil.Event fields, so equal values mean equal decisions
        # (custom types could hold 1 in one record and True in another, which hash alike).
        if not self.caches or event_type != EVENT_TYPE or type(event) is not dict:
            return self._evaluate(event, event_type)
        try:
            fields = self._values_of(event, None, False)
        except (KeyError, TypeError):  # a field the record lacks, tags not a map: no shortcut
            return self._evaluate(event, event_type)
        return self._matching_by(fields, event, event_type)

    def _values_of(self, event: dict[str, Any], key: bytes | None, with_key: bool) -> tuple[Any, ...]:
        """The cache key of a vigil.Event: the values of the routes' fields (tags from the tags
        map, None when absent: tag values are strings), then the Kafka key if `with_key`. One flat
        tuple: a cache hit compares it element by element, and nested tuples cost a lookup more
        memory to read (the cache is cold between batches: the pipeline uses the CPU's caches
        too). Raises KeyError for a record without one of the top-level fields, TypeError when its
        tags are not a map."""
        values: list[Any] = [event[f] for f in self._top]
        names = self._tags
        if names:
            tags = event["tags"]
            if type(tags) is not dict:
                raise TypeError("tags is not a map")
            for name in names:
                values.append(tags.get(name))
        if with_key:
            values.append(key)
        return tuple(values)

    def _matching_by(self, fields: Any, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """`matching` once the record's cache key (its `fields` values) is known."""
        cache = self._cache
        hit = cache.get(fields)
        if hit is None:
            hit = self._evaluate(event, event_type)
            if len(cache) >= self._cache_limit:
                cache.clear()
                self._strings.clear()
            cache[self._shared(fields)] = hit
        return hit

    def _shared(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """`values` as a key to keep: each string the one object kept for its value. A hit compares
        the record's values with the key's: 30,000 keys over 1,000 subjects then read 1,000
        subject strings, which stay in the CPU's caches, not 30,000 (measured: a third of a
        lookup's time was reading the kept keys)."""
        strings = self._strings
        return tuple([strings.setdefault(v, v) if type(v) is str else v for v in values])

    def _evaluate(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        name = event.get("name")
        return tuple(r for r in self.routes if (r.names is None or name in r.names) and r.match(event, event_type))

    def plan(self, event: Mapping[str, Any], event_type: str, key: bytes | None) -> Plan:
        """The routes the record takes or is sampled out of, but for samples by event id (left to
        decide per record): cached like `matching`, and by Kafka key too when a route samples by
        identity (a record without a key is sampled by subject/name: not cached)."""
        by_identity = self._by_identity
        if (not self.caches or event_type != EVENT_TYPE or type(event) is not dict
                or (key is None and by_identity)):
            return self._plan_of(self._evaluate(event, event_type), key, event)
        try:
            values = self._values_of(event, key, by_identity)
        except (KeyError, TypeError):  # as in matching: no shortcut
            return self._plan_of(self._evaluate(event, event_type), key, event)
        plans = self._plans
        hit = plans.get(values)
        if hit is None:
            fields = values[:-1] if by_identity else values
            hit = self._plan_of(self._matching_by(fields, event, event_type), key, event)
            if len(plans) >= self._cache_limit:
                plans.clear()
                self._strings.clear()
            plans[self._shared(values)] = hit
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
    route taking it, and one hash of its event id for all the routes sampling by it."""
    routes = router.routes
    copies: list[list[Any]] = [[] for _ in routes]
    left_out = [0] * len(routes)
    below = [route.sample_below for route in routes]
    for r in records:
        value = r.value
        if type(value) is not dict:
            continue  # not an event (the pipeline dead-letters it)
        type_name = r.type_name
        plan = router.plan(value, type_name if type_name is not None else EVENT_TYPE, r.raw_key)
        if plan is _NOTHING:
            continue
        for i in plan.taken:
            copies[i].append(r)
        for i in plan.identity_out:
            left_out[i] += 1
        if plan.by_event:
            # sample_key's event id branch, its point computed once for every route sampling by it
            event_id = value.get("id")
            data = event_id.encode() if isinstance(event_id, str) and event_id else (r.raw_value or b"")
            point = sample_point(data)
            for i in plan.by_event:
                if point < below[i]:
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
