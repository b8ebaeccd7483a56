"""Which routes an event takes, at pipeline speed.

A route's decision depends only on the field conditions of its match. For vigil.Event records
whose routes read only fields that repeat from event to event (subject, name, kind, origin,
severity, type, tags.*), each condition is tested once per distinct value of its field
(app.rules.match.match_on_atoms): a record costs one lookup per field read (small tables: 1,000
subjects, 10 names, 3 severities...) giving a bit mask of the conditions that hold, and one lookup
of that mask giving its Plan (the routes it takes, and those that sample). Small tables stay in
the CPU's caches beside the pipeline's work; one table keyed by every field's value (as before)
held an entry per identity and severity (30,000 in the benchmark) and was read from memory for
most records. Routes that read changing fields (metrics.*, time, id, text, data.*) are matched
event by event (routes whose match names literal event names only for events of those names).
Samples cost a hash per record: of the identity (the Kafka key) when a route samples by it, of
the event id when one samples by that (app.routing.sampling), each once for all the routes
sampling by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.routing.sampling import sample_point
from app.routing.spec import Route
from app.rules.fields import EVENT_TYPE, MISSING
from app.rules.match import ValueTest, match_on_atoms

__all__ = ["CACHE_LIMIT", "BatchCounts", "Decision", "Plan", "Router", "route_batch", "sample_key", "sampled_in"]

#: Distinct values remembered per field (past it, that field's table starts again).
CACHE_LIMIT: Final = 200_000
#: Fields whose values repeat across an identity's events (worth deciding once per value).
_REPEATING: Final = frozenset({"subject", "name", "kind", "origin", "severity", "type", "from_state", "to_state"})


def _repeats(key: str) -> bool:
    return key in _REPEATING or key.startswith("tags.")


def sample_key(route: Route, key: bytes | None, event: Mapping[str, Any], raw_value: bytes | None) -> bytes:
    """The bytes a record's sample point is computed from: its identity (the Kafka key, else
    `subject/name`) or its event id (records without one: their consumed bytes)."""
    return _identity_bytes(key, event) if route.sample_by == "identity" else _event_id_bytes(event, raw_value)


def _identity_bytes(key: bytes | None, event: Mapping[str, Any]) -> bytes:
    if key is not None:
        return key
    return f"{event.get('subject', '')}/{event.get('name', '')}".encode()


def _event_id_bytes(event: Mapping[str, Any], raw_value: bytes | None) -> bytes:
    return _id_bytes(event.get("id")) or raw_value or b""


def _id_bytes(event_id: Any) -> bytes | None:
    """An event's `id` field as the bytes its sample point is computed from (None: it has none)."""
    return event_id.encode() if isinstance(event_id, str) and event_id else None


def _take_sampled(record: Any, point: int, indexes: tuple[int, ...], below: list[int], copies: list[list[Any]],
                  left_out: list[int]) -> None:
    """The record to the copies of each route of `indexes` whose sample its point is in, else counted out."""
    for i in indexes:
        if point < below[i]:
            copies[i].append(record)
        else:
            left_out[i] += 1


def _event_point(event: dict[str, Any], record: Any) -> int:
    """The sample point of a record's event id (records without one: of their consumed bytes,
    read only then)."""
    return sample_point(_id_bytes(event.get("id")) or record.raw_value or b"")


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
    """The matching routes of a record, as indexes into Router.routes: those without a sample
    (they take it), those sampling by identity and those sampling by event id (decided per
    record by its sample points)."""

    taken: tuple[int, ...]
    by_identity: tuple[int, ...]
    by_event: tuple[int, ...]


_NOTHING: Final = Plan((), (), ())


class _Field:
    """One field the routes' conditions read, and for each of its values the conditions that hold."""

    def __init__(self, key: str) -> None:
        self.key = key
        #: the tag's name for `tags.X`, None for a top-level field (or `type`)
        self.tag: str | None = key[len("tags."):] if key.startswith("tags.") else None
        #: (bit, test) of each condition on this field
        self.tests: list[tuple[int, ValueTest]] = []
        #: value -> the bits of this field's conditions that hold for it
        self.bits: dict[Any, int] = {}

    def value_of(self, event: dict[str, Any], event_type: str) -> Any:
        """The field's value as app.rules.fields reads it (MISSING when absent); raises TypeError
        for tags that are not a dict (the slow path decides those)."""
        tag = self.tag
        if tag is None:
            return event_type if self.key == "type" else event.get(self.key, MISSING)
        tags = event.get("tags")
        if tags is None:
            return MISSING
        if type(tags) is not dict:
            raise TypeError("tags is not a dict")
        return tags.get(tag, MISSING)

    def bits_of(self, value: Any, limit: int) -> int:
        """The bits of this field's conditions that hold for `value` (TypeError when it is not
        hashable: the slow path decides those)."""
        bits = self.bits.get(value)
        if bits is None:
            bits = 0
            for bit, test in self.tests:
                if test(value):
                    bits |= bit
            if len(self.bits) >= limit:
                self.bits.clear()
            self.bits[value] = bits
        return bits


class Router:
    """The enabled routes of a route set, ready to decide events."""

    def __init__(self, routes: Iterable[Route], *, cache_limit: int = CACHE_LIMIT) -> None:
        self.routes: tuple[Route, ...] = tuple(r for r in routes if r.enabled)
        refs = {f.key: f for r in self.routes for f in r.fields}
        self.fields = tuple(sorted(refs))
        #: whether vigil.Event records are decided on their fields' values (see the module's text)
        self.caches = all(_repeats(k) for k in self.fields)
        self._cache_limit = cache_limit
        atoms: list[tuple[str, ValueTest]] = []
        #: per route, whether its match holds given the mask of the conditions that hold
        self._formulas = [match_on_atoms(r.spec, atoms) for r in self.routes] if self.caches else []
        by_key: dict[str, _Field] = {}
        for i, (key, test) in enumerate(atoms):
            by_key.setdefault(key, _Field(key)).tests.append((1 << i, test))
        self._fields = list(by_key.values())
        #: mask of the conditions that hold -> its Plan
        self._plans: dict[int, Plan] = {}
        #: Kafka key -> its sample point (a dict lookup costs a third of the hash: CRC-32 through
        #: a call into zlib, and the arithmetic); up to the cache limit, then started again
        self._identity_points: dict[bytes, int] = {}

    def identity_point(self, raw_key: bytes | None, event: Mapping[str, Any]) -> int:
        """The sample point of a record's identity (its Kafka key, else `subject/name`)."""
        if raw_key is None:
            return sample_point(_identity_bytes(None, event))
        points = self._identity_points
        point = points.get(raw_key)
        if point is None:
            point = sample_point(raw_key)
            if len(points) >= self._cache_limit:
                points.clear()
            points[raw_key] = point
        return point

    def __bool__(self) -> bool:
        return bool(self.routes)

    def matching(self, event: Mapping[str, Any], event_type: str) -> tuple[Route, ...]:
        """The enabled routes whose match accepts the event, in definition order (before sampling)."""
        plan = self.plan(event, event_type)
        return tuple(self.routes[i] for i in sorted(plan.taken + plan.by_identity + plan.by_event))

    def plan(self, event: Mapping[str, Any], event_type: str) -> Plan:
        """The routes the event matches, split by how they sample: decided on the values of its
        fields (see the module's text) or, for routes over changing fields, custom record types
        and records with unusual values, by evaluating every route."""
        # The schema fixes the types of vigil.Event fields, so equal values mean equal decisions
        # (custom types could hold 1 in one record and True in another, which hash alike).
        if not self.caches or event_type != EVENT_TYPE or type(event) is not dict:
            return self._plan_of(self._evaluate(event, event_type))
        mask = 0
        limit = self._cache_limit
        try:
            for f in self._fields:
                mask |= f.bits_of(f.value_of(event, event_type), limit)
        except TypeError:  # tags not a map, an unhashable value: no shortcut
            return self._plan_of(self._evaluate(event, event_type))
        plans = self._plans
        hit = plans.get(mask)
        if hit is None:
            formulas = self._formulas
            hit = plans[mask] = self._plan_of([i for i in range(len(formulas)) if formulas[i](mask)])
        return hit

    def _evaluate(self, event: Mapping[str, Any], event_type: str) -> list[int]:
        name = event.get("name")
        return [i for i, r in enumerate(self.routes)
                if (r.names is None or name in r.names) and r.match(event, event_type)]

    def _plan_of(self, matched: list[int]) -> Plan:
        if not matched:
            return _NOTHING
        taken: list[int] = []
        by_identity: list[int] = []
        by_event: list[int] = []
        for i in matched:
            route = self.routes[i]
            if route.sample_percent is None:
                taken.append(i)
            elif route.sample_by == "identity":
                by_identity.append(i)
            else:
                by_event.append(i)
        return Plan(tuple(taken), tuple(by_identity), tuple(by_event))

    def decide(self, event: Mapping[str, Any], event_type: str, key: bytes | None,
               raw_value: bytes | None) -> Decision:
        """Where the event goes after sampling, in definition order (what the stage does, for tools
        and tests)."""
        plan = self.plan(event, event_type)
        taken = list(plan.taken)
        out: list[int] = []
        for i in plan.by_identity + plan.by_event:
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
    so that it is compiled with the router (app.native): per record one Plan (Router.plan), an
    append per route taking it, and a sample point per way of sampling its routes use."""
    routes = router.routes
    copies: list[list[Any]] = [[] for _ in routes]
    left_out = [0] * len(routes)
    below = [route.sample_below for route in routes]
    for r in records:
        value = r.value
        if type(value) is not dict:
            continue  # not an event (the pipeline dead-letters it)
        type_name = r.type_name
        plan = router.plan(value, type_name if type_name is not None else EVENT_TYPE)
        if plan is _NOTHING:
            continue
        for i in plan.taken:
            copies[i].append(r)
        # one sample point per way of sampling, for all the routes sampling that way
        if plan.by_identity:
            _take_sampled(r, router.identity_point(r.raw_key, value), plan.by_identity, below, copies, left_out)
        if plan.by_event:
            _take_sampled(r, _event_point(value, r), plan.by_event, below, copies, left_out)
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
