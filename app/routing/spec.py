"""One routes file's text -> validated routes, every problem reported as file:line.

    routes:
      - name: prod-sample-to-dev        # unique across files: [A-Za-z0-9][A-Za-z0-9_.:-]*
        description: ...                # optional
        enabled: true                   # optional; false keeps the route checked but inactive
        match: {tags.env: production}   # the rules' match grammar (app.rules.match); absent: every event
        to: dev-events                  # destination topic (the settings' topic_prefix applies)
        sample: {percent: 10, by: identity}   # optional; by: identity (default) | event_id
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.routing.sampling import sample_threshold
from app.rules.fields import FieldRef, parse_field
from app.rules.match import Predicate, compile_match, literal_names, match_fields
from app.rules.source import ErrorSink, LineDict, RuleError, line_of, load_yaml_text

__all__ = ["ROUTE_KEYS", "SAMPLE_BY", "SAMPLE_KEYS", "SOURCE_TOPIC", "Route", "compile_route", "compile_routes_text"]

ROUTE_KEYS: Final = ("name", "description", "enabled", "match", "to", "sample")
SAMPLE_KEYS: Final = ("percent", "by")
SAMPLE_BY: Final = ("identity", "event_id")
#: The topic routes read (logical name): a route back into it would copy its copies for ever.
SOURCE_TOPIC: Final = "events"
#: Route names, as rule names (app.rules.spec): they label metrics and appear in logs.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
#: What Kafka accepts as a topic name (before the prefix).
_TOPIC: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True, eq=False)
class Route:
    """A compiled route."""

    name: str
    description: str
    file: str
    line: int
    enabled: bool
    match: Predicate
    #: event names it can match (dispatch), None: any
    names: frozenset[str] | None
    #: the fields its match reads
    fields: tuple[FieldRef, ...]
    #: destination topic, logical (the worker applies the topic prefix)
    to: str
    #: sample share in % (None: every matching event)
    sample_percent: float | None = None
    #: "identity" (the Kafka key) or "event_id"
    sample_by: str = "identity"
    #: a record is in the sample when its point (app.routing.sampling) is below this
    sample_below: int = 0
    #: the `match:` mapping as written (the router decides on its field conditions: match_on_atoms)
    spec: Any = None

    @property
    def location(self) -> str:
        """`file:line` of the route's definition."""
        return f"{self.file}:{self.line}"

    def describe(self) -> str:
        """One line: `name -> to (10% by identity)`."""
        sample = "" if self.sample_percent is None else f" ({self.sample_percent:g}% by {self.sample_by})"
        return f"{self.name} -> {self.to}{sample}{'' if self.enabled else ' [disabled]'}"


def _sample(raw: Any, sink: ErrorSink, line: int, what: str) -> tuple[float | None, str]:
    if raw is None:
        return None, "identity"
    if not isinstance(raw, Mapping):
        sink.add(line, f"{what}: `sample` must be a mapping, e.g. sample: {{percent: 10, by: identity}}")
        return None, "identity"
    sink.unknown_keys(raw, SAMPLE_KEYS, f"{what}: sample")
    percent = raw.get("percent")
    if "percent" not in raw:
        sink.add(line, f"{what}: sample needs `percent` (0 < percent <= 100), e.g. percent: 10")
        percent = None
    elif isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
        sink.add(line_of(raw, "percent", line), f"{what}: sample percent must be a number with 0 < percent "
                                                f"<= 100, got {percent!r}")
        percent = None
    by = raw.get("by", "identity")
    if by not in SAMPLE_BY:
        sink.add(line_of(raw, "by", line), f"{what}: sample by must be one of {', '.join(SAMPLE_BY)}, got {by!r}")
        by = "identity"
    return (float(percent) if percent is not None else None), by


def _destination(raw: Mapping[str, Any], sink: ErrorSink, line: int, what: str) -> str:
    to = raw.get("to")
    to_line = line_of(raw, "to", line)
    if "to" not in raw:
        sink.add(line, f"{what}: missing `to` (the destination topic, e.g. to: dev-events)")
    elif not isinstance(to, str) or not _TOPIC.fullmatch(to):
        sink.add(to_line, f"{what}: `to` must be a topic name (letters, digits, '.', '_', '-'), got {to!r}")
    elif to == SOURCE_TOPIC:
        sink.add(to_line, f"{what}: `to: {to}` is the topic routes read: its copies would be routed again "
                          "(a loop); send them to another topic")
    else:
        return to
    return ""


def compile_route(raw: Any, sink: ErrorSink, line: int) -> Route | None:
    """Validate and compile one route mapping; errors go to `sink` (returns None if any)."""
    if not isinstance(raw, Mapping):
        sink.add(line, "each route must be a mapping starting with `- name:`")
        return None
    before = len(sink.errors)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        sink.add(line_of(raw, "name", line), f"route name must match [A-Za-z0-9][A-Za-z0-9_.:-]*, got {name!r}")
        name = "?"
    what = f"route {name}"
    sink.unknown_keys(raw, ROUTE_KEYS, what)
    description = raw.get("description", "")
    if not isinstance(description, str):
        sink.add(line_of(raw, "description", line), f"{what}: `description` must be text")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        sink.add(line_of(raw, "enabled", line), f"{what}: `enabled` must be true or false, got {enabled!r}")
    spec = raw.get("match")
    match = compile_match(spec, sink, line_of(raw, "match", line))
    fields = tuple(ref for key in sorted(match_fields(spec)) if isinstance(ref := parse_field(key), FieldRef))
    to = _destination(raw, sink, line, what)
    percent, by = _sample(raw.get("sample"), sink, line_of(raw, "sample", line), what)
    if len(sink.errors) > before:
        return None
    return Route(name=name, description=str(description), file=sink.file, line=line, enabled=bool(enabled),
                 match=match, names=literal_names(spec), fields=fields, to=to, sample_percent=percent,
                 sample_by=by, sample_below=sample_threshold(percent) if percent is not None else 0, spec=spec)


def compile_routes_text(text: str, file: str) -> tuple[list[Route], list[RuleError]]:
    """Every route of one file's text and every error in it (duplicate names within it included)."""
    sink = ErrorSink(file)
    doc = load_yaml_text(text, sink)
    if sink:
        return [], sink.errors
    if not isinstance(doc, LineDict) or "routes" not in doc:
        sink.add(line_of(doc, default=1), "expected a top-level mapping with a `routes:` list")
        return [], sink.errors
    sink.unknown_keys(doc, ("routes",), "file")
    items = doc.get("routes") or []
    if not isinstance(items, list):
        sink.add(line_of(doc, "routes"), "`routes:` must be a list of routes (each item starts with `- name:`)")
        return [], sink.errors
    routes: list[Route] = []
    first_line: dict[str, int] = {}
    for i, raw in enumerate(items):
        line = line_of(items, i, line_of(doc, "routes"))
        route = compile_route(raw, sink, line)
        if route is None:
            continue
        if route.name in first_line:
            sink.add(line, f"duplicate route name `{route.name}` (first defined at {file}:{first_line[route.name]}); "
                           "route names must be unique")
            continue
        first_line[route.name] = line
        routes.append(route)
    return routes, sink.errors
