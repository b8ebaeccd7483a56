"""Conditions over the current state of the system, shared by gates and by the waits of runbooks
and rolls. Pure: what they are and parsing them (every error with its line); app.orchestration.judges
judges data already fetched, app.orchestration.sources fetches it.

    - status:   {subject: "web*", name: http, tags: {env: prod}, in: [OK], at_least: 1}
    - alerts:   {subject: "db*", states: [CRITICAL], max: 0, silenced: false}
    - silences: {reason: "*freeze*", rule: "*", covers: {subject: web1}, max: 0}
    - metric:   {subject: lb1, name: http, metric: latency_ms, aggregate: p95, over: 1m, when: {lt: 250}}
    - rule:     {name: web-latency-high, firing: false}
    each may add `stable_for: 5m` (and `label:` for display).

`status` holds when at least `at_least` identities match and every one is in a state of `in`.
`alerts` counts the open alerts among matching identities (a state of `states`, by default any
but OK) that no active silence covers (unless `silenced: true`), and holds when at most `max`.
`silences` counts the active silences whose reason/rule globs match and that would cover an action
about the `covers` fields, and holds when there are at least `at_least` and at most `max`.
`metric` aggregates one metric of the matching identities over the last `over` from the metric
windows (the largest window size that fits in `over`): avg, min, max, sum, count and last exactly;
p50/p95/p99 as the largest of the windows' own percentiles (an upper bound, so "below" is safe).
`rule` reuses a rule's own `match` and trigger, so the logic that monitors is the logic that gates:
a `register` rule fires for an identity whose register aggregate over the rule's period satisfies
its `when`; a `status` rule for one in a state its `to` names; a rule with only `match` for one
that is not OK. `firing: false` (the default) holds when it fires for none.

`stable_for` needs no memory of earlier checks: how long a condition has held comes from the data
itself -- the identities' last transitions (`since`), when matching silences ended, and the older
metric windows, each judged on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from app.globs import glob_matcher
from app.model.events import State
from app.rules.match import Predicate, ValueTest, compile_value_test
from app.rules.silences import ActionFacts, Silence
from app.rules.source import ErrorSink, LineDict, line_of
from app.rules.spec import Rule
from app.rules.triggers import MatchTrigger, RegisterTrigger, StatusTrigger

__all__ = [
    "CONDITION_KINDS",
    "MAX_SERIES",
    "STATES",
    "WINDOW_AGGREGATES",
    "AlertsCondition",
    "Condition",
    "ConditionResult",
    "MetricCondition",
    "RuleCondition",
    "RuleLookup",
    "Selector",
    "Series",
    "SilencesCondition",
    "StatusCondition",
    "describe_time",
    "parse_condition",
    "parse_conditions",
]

STATES: Final = tuple(s.value for s in State)
CONDITION_KINDS: Final = ("status", "alerts", "silences", "metric", "rule")
#: What metric windows can answer exactly (or, for percentiles, as an upper bound).
WINDOW_AGGREGATES: Final = ("avg", "min", "max", "sum", "count", "last", "p50", "p95", "p99")
#: At most this many identities are judged by their metric windows in one condition.
MAX_SERIES: Final = 200
_COMMON_KEYS: Final = ("stable_for", "label")

#: Finds a rule by name for `rule:` conditions (None when there is no such rule).
RuleLookup = Callable[[str], Rule | None]
#: One identity's windows of one metric (WindowAggregate fields), any sizes, any order.
Series = Sequence[Mapping[str, Any]]


def describe_time(ms: int | None) -> str:
    """ms since the epoch as a short UTC time for reasons people read."""
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the parts --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """Which identities: subject and name globs and tag globs (a tag must be present)."""

    subject: str = "*"
    name: str = "*"
    tags: Mapping[str, str] = field(default_factory=dict)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when a status record (subject, name, tags) is selected."""
        if not glob_matcher(self.subject)(str(record.get("subject", ""))):
            return False
        if not glob_matcher(self.name)(str(record.get("name", ""))):
            return False
        tags = record.get("tags") or {}
        return all(k in tags and glob_matcher(p)(str(tags[k])) for k, p in self.tags.items())

    def describe(self) -> str:
        tags = "".join(f" {k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.subject}/{self.name}{tags}"


@dataclass(frozen=True)
class Condition:
    """Base of every condition: where it was written and how long it must have held."""

    kind: ClassVar[str] = ""
    line: int
    label: str
    stable_for_ms: int | None


@dataclass(frozen=True)
class StatusCondition(Condition):
    kind: ClassVar[str] = "status"
    selector: Selector
    states: frozenset[str]
    at_least: int = 1


@dataclass(frozen=True)
class AlertsCondition(Condition):
    kind: ClassVar[str] = "alerts"
    selector: Selector
    states: frozenset[str]
    max_open: int = 0
    count_silenced: bool = False


@dataclass(frozen=True)
class SilencesCondition(Condition):
    kind: ClassVar[str] = "silences"
    reason: str = "*"
    rule: str | None = None
    covers: Mapping[str, Any] | None = None
    max_active: int = 0
    at_least: int = 0

    def counts(self, silence: Silence) -> bool:
        """Whether `silence` is one this condition is about (active or not)."""
        if not glob_matcher(self.reason)(silence.reason):
            return False
        if self.rule is not None and not glob_matcher(self.rule)(silence.rule or ""):
            return False
        if self.covers is not None:
            probe = dict(self.covers)
            facts = ActionFacts(rule=str(probe.pop("rule", "")), action_type=str(probe.pop("action", "")),
                                target=str(probe.pop("target", probe.get("subject", ""))),
                                group_key=str(probe.pop("group", "")), event=probe, event_type="vigil.Event")
            return silence.covers(facts, silence.created_ms)
        return True


@dataclass(frozen=True)
class MetricCondition(Condition):
    kind: ClassVar[str] = "metric"
    selector: Selector
    metric: str
    aggregate: str
    over_ms: int
    test: ValueTest
    test_text: str
    missing_holds: bool = False


@dataclass(frozen=True)
class RuleCondition(Condition):
    kind: ClassVar[str] = "rule"
    rule: Rule
    firing: bool = False

    @property
    def selector(self) -> Selector:
        """The identities worth fetching: the rule's literal event name when it has one."""
        names = self.rule.names
        return Selector(name=next(iter(names))) if names and len(names) == 1 else Selector()

    @property
    def predicate(self) -> Predicate:
        return self.rule.match

    @property
    def register(self) -> RegisterTrigger | None:
        trigger = self.rule.trigger
        return trigger if isinstance(trigger, RegisterTrigger) else None


@dataclass(frozen=True)
class ConditionResult:
    """How one condition was judged: whether it holds, since when (None: as far back as the data
    goes), whether it is stable (held for its stable_for), and why, in words."""

    kind: str
    label: str
    holds: bool
    since_ms: int | None
    reason: str
    stable: bool = True
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "ok": self.holds and self.stable, "holds": self.holds,
                "stable": self.stable, "since": self.since_ms, "reason": self.reason, "details": list(self.details)}


# --- parsing ------------------------------------------------------------------------------------------

def _states(spec: Any, sink: ErrorSink, line: int, what: str, default: Iterable[str]) -> frozenset[str]:
    if spec is None:
        return frozenset(default)
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not names:
        sink.add(line, f"{what}: give a state or a list of states ({', '.join(STATES)})")
        return frozenset(default)
    out = set()
    for name in names:
        if not isinstance(name, str) or name.upper() not in STATES:
            sink.add(line, f"{what}: {name!r} is not a state; use {', '.join(STATES)}")
        else:
            out.add(name.upper())
    return frozenset(out)


def _text(spec: Mapping[str, Any], key: str, sink: ErrorSink, line: int, what: str, default: str = "*") -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        sink.add(line_of(spec, key, line), f"{what}.{key} must be a non-empty text (a glob)")
        return default
    return value


def _count(spec: Mapping[str, Any], key: str, sink: ErrorSink, line: int, what: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        sink.add(line_of(spec, key, line), f"{what}.{key} must be a whole number >= 0")
        return default
    return value


def _selector(spec: Mapping[str, Any], sink: ErrorSink, line: int, what: str) -> Selector:
    tags = spec.get("tags", {})
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        sink.add(line_of(spec, "tags", line), f"{what}.tags must map tag names to globs, e.g. {{role: cassandra}}")
        tags = {}
    return Selector(_text(spec, "subject", sink, line, what), _text(spec, "name", sink, line, what), dict(tags))


def _parse_status(spec: LineDict, sink: ErrorSink, line: int, label: str, stable: int | None) -> Condition:
    sink.unknown_keys(spec, ("subject", "name", "tags", "in", "at_least", *_COMMON_KEYS), "status")
    sel = _selector(spec, sink, line, "status")
    states = _states(spec.get("in"), sink, line_of(spec, "in", line), "status.in", ["OK"])
    at_least = _count(spec, "at_least", sink, line, "status", 1)
    return StatusCondition(line, label or f"status {sel.describe()} in {'|'.join(sorted(states))}", stable, sel,
                           states, at_least)


def _parse_alerts(spec: LineDict, sink: ErrorSink, line: int, label: str, stable: int | None) -> Condition:
    sink.unknown_keys(spec, ("subject", "name", "tags", "states", "max", "silenced", *_COMMON_KEYS), "alerts")
    sel = _selector(spec, sink, line, "alerts")
    states = _states(spec.get("states"), sink, line_of(spec, "states", line), "alerts.states",
                     [s for s in STATES if s != "OK"])
    silenced = spec.get("silenced", False)
    if not isinstance(silenced, bool):
        sink.add(line_of(spec, "silenced", line), "alerts.silenced must be true or false")
        silenced = False
    max_open = _count(spec, "max", sink, line, "alerts", 0)
    return AlertsCondition(line, label or f"open alerts {sel.describe()} <= {max_open}", stable, sel, states,
                           max_open, silenced)


def _parse_silences(spec: LineDict, sink: ErrorSink, line: int, label: str, stable: int | None) -> Condition:
    sink.unknown_keys(spec, ("reason", "rule", "covers", "max", "at_least", *_COMMON_KEYS), "silences")
    reason = _text(spec, "reason", sink, line, "silences")
    rule = spec.get("rule")
    if rule is not None and not isinstance(rule, str):
        sink.add(line_of(spec, "rule", line), "silences.rule must be a glob of rule names")
        rule = None
    covers = spec.get("covers")
    if covers is not None and (not isinstance(covers, Mapping) or not covers):
        sink.add(line_of(spec, "covers", line), "silences.covers must map fields to values, e.g. {subject: web1}")
        covers = None
    at_least = _count(spec, "at_least", sink, line, "silences", 0)
    max_active = _count(spec, "max", sink, line, "silences", 0 if at_least == 0 else 1_000_000)
    if max_active < at_least:
        sink.add(line, f"silences: max ({max_active}) is below at_least ({at_least}): it can never hold")
    what = f"at least {at_least}" if at_least else f"at most {max_active}"
    return SilencesCondition(line, label or f"{what} active silence(s) reason={reason}", stable, reason, rule,
                             dict(covers) if covers else None, max_active, at_least)


def _parse_metric(spec: LineDict, sink: ErrorSink, line: int, label: str, stable: int | None) -> Condition | None:
    sink.unknown_keys(spec, ("subject", "name", "tags", "metric", "aggregate", "over", "when", "missing",
                             *_COMMON_KEYS), "metric")
    sel = _selector(spec, sink, line, "metric")
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric:
        sink.add(line_of(spec, "metric", line), "metric.metric must name a metric, e.g. metric: latency_ms")
        return None
    aggregate = spec.get("aggregate", "avg")
    if aggregate not in WINDOW_AGGREGATES:
        sink.add(line_of(spec, "aggregate", line),
                 f"metric.aggregate {aggregate!r}: metric windows answer {', '.join(WINDOW_AGGREGATES)}")
        return None
    over = sink.duration_ms(spec.get("over", "1m"), line_of(spec, "over", line), "metric.over")
    if "when" not in spec:
        sink.add(line, "metric needs `when:`, the bound its value must satisfy, e.g. when: {lt: 250}")
        return None
    test = compile_value_test(spec["when"], sink, line_of(spec, "when", line), key="when")
    missing = spec.get("missing", "closed")
    if missing not in ("closed", "open"):
        sink.add(line_of(spec, "missing", line), "metric.missing must be closed (no data: does not hold) or open")
    if over is None:
        return None
    text = _when_text(spec["when"])
    return MetricCondition(line, label or f"{aggregate}({metric}) of {sel.describe()} over {over // 1000}s {text}",
                           stable, sel, metric, str(aggregate), over, test, text, missing == "open")


def _when_text(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return " and ".join(f"{op} {value}" for op, value in spec.items())
    return f"= {spec}"


def _window_metric(rule: Rule) -> str | None:
    """The metric-window name of a register rule's metric (None when windows do not keep it)."""
    trigger = rule.trigger
    if not isinstance(trigger, RegisterTrigger):
        return None
    metric = trigger.metric
    if metric.startswith("metrics."):
        return metric[len("metrics."):]
    return None if metric.startswith(("data.", "tags.")) else metric


def _parse_rule(spec: LineDict, sink: ErrorSink, line: int, label: str, stable: int | None,
                rules: RuleLookup | None) -> Condition | None:
    sink.unknown_keys(spec, ("name", "firing", *_COMMON_KEYS), "rule")
    name = spec.get("name")
    firing = spec.get("firing", False)
    if not isinstance(firing, bool):
        sink.add(line_of(spec, "firing", line), "rule.firing must be true or false")
        return None
    if not isinstance(name, str) or not name:
        sink.add(line_of(spec, "name", line), "rule.name must name a rule of the rules directory")
        return None
    rule = rules(name) if rules is not None else None
    if rule is None:
        sink.add(line_of(spec, "name", line), f"rule.name: no rule called {name!r} is defined (a condition "
                                              "reuses a rule of the same rules directory)")
        return None
    trigger = rule.trigger
    if isinstance(trigger, RegisterTrigger):
        if trigger.aggregate not in WINDOW_AGGREGATES or _window_metric(rule) is None:
            sink.add(line_of(spec, "name", line),
                     f"rule {name}: its register ({trigger.aggregate} of {trigger.metric}) cannot be judged from "
                     f"metric windows, which keep metrics.* and answer {', '.join(WINDOW_AGGREGATES)}")
            return None
    elif not isinstance(trigger, StatusTrigger | MatchTrigger):
        sink.add(line_of(spec, "name", line),
                 f"rule {name}: a `{trigger.kind}` trigger depends on a sequence of events, not on the current "
                 "state; a condition can reuse rules with register, status or only match")
        return None
    verb = "fires" if firing else "does not fire"
    return RuleCondition(line, label or f"rule {name} {verb}", stable, rule, firing)


def parse_condition(raw: Any, sink: ErrorSink, line: int, *, rules: RuleLookup | None = None) -> Condition | None:
    """One `{KIND: {...}}` condition, or None after reporting what is wrong to `sink`."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        sink.add(line, f"a condition is one `KIND: {{...}}` mapping ({', '.join(CONDITION_KINDS)})")
        return None
    ((kind, spec),) = raw.items()
    spec_line = line_of(raw, kind, line)
    if kind not in CONDITION_KINDS:
        sink.add(spec_line, f"unknown condition `{kind}`; use one of {', '.join(CONDITION_KINDS)}")
        return None
    if not isinstance(spec, Mapping):
        sink.add(spec_line, f"{kind}: expected a mapping of its fields")
        return None
    stable = None
    if "stable_for" in spec:
        stable = sink.duration_ms(spec["stable_for"], line_of(spec, "stable_for", spec_line), f"{kind}.stable_for")
    label = spec.get("label", "")
    if not isinstance(label, str):
        sink.add(line_of(spec, "label", spec_line), f"{kind}.label must be text")
        label = ""
    view = spec if isinstance(spec, LineDict) else LineDict(spec)
    if kind == "status":
        return _parse_status(view, sink, spec_line, label, stable)
    if kind == "alerts":
        return _parse_alerts(view, sink, spec_line, label, stable)
    if kind == "silences":
        return _parse_silences(view, sink, spec_line, label, stable)
    if kind == "metric":
        return _parse_metric(view, sink, spec_line, label, stable)
    return _parse_rule(view, sink, spec_line, label, stable, rules)


def parse_conditions(raw: Any, sink: ErrorSink, line: int, *, what: str,
                     rules: RuleLookup | None = None) -> list[Condition]:
    """A list of conditions (all must hold); errors go to `sink`."""
    if isinstance(raw, Mapping):
        raw = [raw]  # one condition may be written without the list
    if not isinstance(raw, list) or not raw:
        sink.add(line, f"{what}: give a list of conditions, e.g. [{{status: {{subject: 'web*', in: [OK]}}}}]")
        return []
    found = (parse_condition(item, sink, line_of(raw, i, line), rules=rules) for i, item in enumerate(raw))
    return [c for c in found if c is not None]
