"""Triggers: when a matching event (or transition, or silence) makes a rule fire.

Each trigger is pure and event-time driven: it gets the group's previous state (a JSON-compatible
dict, or None) and returns a `Step` with the new state, maybe a `Hit`, and maybe a timer to arm.
The engine owns storage, grouping and throttling, so triggers are testable with plain values.

State shapes (kept small: they are written to the state store on every matching event):
    register   {"s": [[time_ms, value], ...], "since": time_ms | null}
    count      {"t": [time_ms, ...]}                     (at most at_least entries)
    sequence   {"p": [start_ms | null, ...]}             (one entry per completed-steps level)
    absent_for {"last": ms, "fired": bool, "event": {...}, "type": str, "group": {...}}
    schedule   {"next": slot_ms, "last": slot_ms | null, "seen": ms | null, "group": {...}, "event": {...} | null}

For state expiry (app.runtime.expiry) each stateful trigger says when a state was last active
(`active_ms`), how long after that it still matters by itself (`span_ms`: the retention is never
shorter), and until when it owes something (`held_until_ms`: an absence not yet judged). A
schedule's state records no activity (it lives as long as its rule: its timer is what it is).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from app.model.ids import deterministic_id
from app.rules.fields import event_ref, group_key, metric_getter
from app.rules.match import (
    EventValueTest,
    OperandCompiler,
    Predicate,
    ValueTest,
    compile_event_value_test,
    compile_match,
    compile_value_test,
)
from app.rules.schedules import Schedule, ScheduleError, due_slot, schedule_from_spec, splay_delay_ms
from app.rules.source import ErrorSink, LineDict, line_of

__all__ = [
    "AGGREGATES",
    "TRIGGER_KEYS",
    "AbsentTrigger",
    "Aggregator",
    "CountTrigger",
    "Hit",
    "MatchTrigger",
    "RegisterTrigger",
    "ScheduleTrigger",
    "SequenceTrigger",
    "StatusTrigger",
    "Step",
    "Trigger",
    "aggregate",
    "aggregator",
    "parse_trigger",
]

#: Rule keys that choose a trigger, and the rule keys that only make sense beside each.
TRIGGER_KEYS: Final = ("register", "status", "absent_for", "count", "sequence", "schedule", "every")
COMPANION_KEYS: Final = {"when": "register", "for": "register", "within": "sequence"}

AGGREGATES: Final = ("avg", "min", "max", "sum", "count", "last", "rate", "p95")
_PERCENTILE: Final = re.compile(r"p(\d{1,2}(?:\.\d+)?)")
_STATES: Final = ("OK", "WARNING", "CRITICAL", "UNKNOWN", "EXPIRED")
DEFAULT_MAX_SAMPLES: Final = 512
_MAX_SAMPLES_LIMIT: Final = 100_000


# Hit and Step are made per matching event: their __init__ is written out so that mypyc compiles it
# (a dataclass's generated one runs as Python, a frozen one through object.__setattr__ per field).
# Treat both as immutable.
@dataclass(init=False, slots=True)
class Hit:
    """A trigger fired. `event`/`event_type` override the cause (absence: the last event seen)."""

    trigger_id: str
    value: Any
    time_ms: int
    event: Mapping[str, Any] | None
    event_type: str | None

    def __init__(self, trigger_id: str, value: Any, time_ms: int, event: Mapping[str, Any] | None = None,
                 event_type: str | None = None) -> None:
        self.trigger_id = trigger_id
        self.value = value
        self.time_ms = time_ms
        self.event = event
        self.event_type = event_type


@dataclass(init=False, slots=True)
class Step:
    """What a trigger decided: the group's new state (None deletes it), a hit, a timer to arm."""

    state: dict[str, Any] | None
    hit: Hit | None
    timer_at_ms: int | None

    def __init__(self, state: dict[str, Any] | None, hit: Hit | None = None, timer_at_ms: int | None = None) -> None:
        self.state = state
        self.hit = hit
        self.timer_at_ms = timer_at_ms


class Trigger:
    """Base: a stateless trigger that ignores events (subclasses override what they use).

    A dataclass trigger takes its class constants from a plain base class of its own (e.g.
    _RegisterKind): compiled by mypyc, a dataclass's ClassVars would reach @dataclass as fields."""

    kind: ClassVar[str] = "match"
    stateful: ClassVar[bool] = False
    on_transitions: ClassVar[bool] = False
    uses_timers: ClassVar[bool] = False
    default_group_by: ClassVar[tuple[str, ...]] = ("subject", "name")

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        """React to a matching event of this rule's group."""
        return Step(state)

    def on_timer(self, state: dict[str, Any] | None, now_ms: int) -> Step:
        """React to this group's timer (only triggers that arm timers get called)."""
        return Step(state)

    @property
    def takes_events(self) -> bool:
        """Whether matching events reach this trigger (a schedule without `match:` runs on time alone)."""
        return True

    @property
    def span_ms(self) -> int:
        """How long (event time) after its last activity a state still decides something."""
        return 0

    def active_ms(self, state: Mapping[str, Any]) -> int | None:
        """The event time of the state's last activity (None: it records none)."""
        return None

    def held_until_ms(self, state: Mapping[str, Any]) -> int | None:
        """Until when the state owes a firing (it must not expire before), or None."""
        return None


class MatchTrigger(Trigger):
    """No trigger key: every matching event fires."""

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        return Step(None, Hit(f"event:{event_ref(event)}", None, time_ms))


# --- register -------------------------------------------------------------------------------------

def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    # Nearest rank: always one of the samples, so "p95 > 20" means some real sample is > 20.
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _rate(samples: Sequence[Sequence[float]]) -> float | None:
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    increase = 0.0
    for (_, previous), (_, current) in itertools.pairwise(samples):
        # A drop means the counter restarted from zero (process restart): count from zero.
        increase += current - previous if current >= previous else current
    return increase / ((samples[-1][0] - samples[0][0]) / 1000)


#: An aggregate over time-ordered, non-empty [time_ms, value] samples (None when undefined).
Aggregator = Callable[[Sequence[Sequence[float]]], float | None]
_SIMPLE: Final[dict[str, Callable[[list[float]], float]]] = {
    "count": len, "last": lambda v: v[-1],  # avg, sum, min and max: _DIRECT
}


def _values(samples: Sequence[Sequence[float]]) -> list[float]:
    return [v for _, v in samples]


# avg, sum, min and max straight over the samples (no list of values per event). The same results
# as sum()/min()/max() of the values: sum() adds floats left to right in a C double from 0, and
# min()/max() keep the first extreme one.
def _sum(samples: Sequence[Sequence[float]]) -> float:
    total = 0.0
    for sample in samples:
        total += sample[1]
    return total


def _avg(samples: Sequence[Sequence[float]]) -> float:
    return _sum(samples) / len(samples)


def _min(samples: Sequence[Sequence[float]]) -> float:
    lowest = float(samples[0][1])
    for sample in samples:
        if sample[1] < lowest:
            lowest = sample[1]
    return lowest


def _max(samples: Sequence[Sequence[float]]) -> float:
    highest = float(samples[0][1])
    for sample in samples:
        if sample[1] > highest:
            highest = sample[1]
    return highest


_DIRECT: Final[dict[str, Aggregator]] = {"avg": _avg, "sum": _sum, "min": _min, "max": _max}


def aggregator(name: str) -> Aggregator:
    """The function computing aggregate `name` (looked up once per rule, not once per event);
    ValueError for an unknown name."""
    direct = _DIRECT.get(name)
    if direct is not None:
        return direct
    if name == "rate":
        return _rate
    simple = _SIMPLE.get(name)
    if simple is not None:
        return lambda samples: float(simple(_values(samples)))
    match = _PERCENTILE.fullmatch(name)
    if match:
        q = float(match.group(1))
        return lambda samples: _percentile(_values(samples), q)
    raise ValueError(f"unknown aggregate {name!r}")


def _first_after(samples: Sequence[Sequence[float]], cutoff_ms: int) -> int:
    """bisect_right by time: how many samples are at or before the window's start (few: they leave
    one by one)."""
    first = 0
    while first < len(samples) and samples[first][0] <= cutoff_ms:
        first += 1
    return first


def aggregate(name: str, samples: Sequence[Sequence[float]]) -> float | None:
    """The aggregate of time-ordered [time_ms, value] samples, or None when it is undefined."""
    compute = aggregator(name)
    return compute(samples) if samples else None


def _valid_aggregate(name: Any) -> bool:
    if name in AGGREGATES:
        return True
    match = _PERCENTILE.fullmatch(name) if isinstance(name, str) else None
    return match is not None and 0 < float(match.group(1)) < 100


class _RegisterKind(Trigger):
    """RegisterTrigger's class constants (see Trigger)."""

    kind = "register"
    stateful = True


@dataclass(frozen=True, eq=False)
class RegisterTrigger(_RegisterKind):
    """Fires while `aggregate(metric)` over the sliding `period` satisfies `when` (for `for_ms`)."""

    metric: str
    aggregate: str
    period_ms: int
    when: EventValueTest  # (aggregate, event, event type): its operand may be looked up per event
    for_ms: int | None = None
    max_samples: int = DEFAULT_MAX_SAMPLES
    value_of: Callable[[Mapping[str, Any], str], float | None] = field(init=False, repr=False)
    compute: Aggregator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_of", metric_getter(self.metric))  # frozen: set once here
        object.__setattr__(self, "compute", aggregator(self.aggregate))

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        value = self.value_of(event, event_type)
        kept = state["s"] if state else []
        old: list[list[float]] = kept if isinstance(kept, list) else list(kept)
        if value is None or (old and time_ms <= old[-1][0] - self.period_ms):
            return Step(state)  # no sample, or one already outside the window
        if not old or time_ms >= old[-1][0]:
            # In time order, as usual (where insort would put it): the window ends at the new
            # sample, and the kept samples are copied once, with the new one after them.
            now_ms = time_ms
            cutoff = now_ms - self.period_ms
            first = _first_after(old, cutoff)
            if first == len(old) and time_ms <= cutoff:
                first += 1  # the new sample is outside a zero-length window too
            start = max(first, len(old) + 1 - self.max_samples)
            samples = old[start:]
            if start <= len(old):
                samples.append([time_ms, value])
        else:
            samples = list(old)
            bisect.insort(samples, [time_ms, value], key=lambda s: s[0])
            now_ms = int(samples[-1][0])
            first = _first_after(samples, now_ms - self.period_ms)
            # Bounded: beyond max_samples the oldest go first (the window effectively shortens).
            samples = samples[max(first, len(samples) - self.max_samples):]
        result = self.compute(samples) if samples else None
        holds = result is not None and self.when(result, event, event_type)
        if not holds:
            return Step({"s": samples, "since": None})
        since = int(state["since"]) if state and state.get("since") is not None else now_ms
        new_state = {"s": samples, "since": since}
        if self.for_ms is not None and now_ms - since < self.for_ms:
            return Step(new_state)
        return Step(new_state, Hit(f"register:{event_ref(event)}", result, now_ms))

    @property
    def span_ms(self) -> int:
        return self.period_ms

    def active_ms(self, state: Mapping[str, Any]) -> int | None:
        samples = state.get("s")
        return int(samples[-1][0]) if samples else None


def _parse_register(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> RegisterTrigger | None:
    spec, line = rule["register"], line_of(rule, "register")
    if not isinstance(spec, Mapping):
        sink.add(line, "`register` must be a mapping: {metric: M, aggregate: avg, period: 10s}")
        return None
    sink.unknown_keys(spec, ("metric", "aggregate", "period", "max_samples"), "register")
    metric, agg = spec.get("metric"), spec.get("aggregate", "avg")
    ok = True
    if not isinstance(metric, str) or not metric:
        sink.add(line_of(spec, "metric", line), "register: `metric` must name a metric, e.g. metric: load1")
        ok = False
    if not _valid_aggregate(agg):
        sink.add(line_of(spec, "aggregate", line),
                 f"register: unknown aggregate {agg!r}; use one of {', '.join(AGGREGATES)} (or p50, p99, ...)")
        ok = False
    period = sink.duration_ms(spec.get("period"), line_of(spec, "period", line), "register.period")
    max_samples = spec.get("max_samples", DEFAULT_MAX_SAMPLES)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) \
            or not 2 <= max_samples <= _MAX_SAMPLES_LIMIT:
        sink.add(line_of(spec, "max_samples", line),
                 f"register.max_samples must be an integer from 2 to {_MAX_SAMPLES_LIMIT}")
        ok = False
    if "when" not in rule:
        sink.add(line, "register needs a `when:` condition beside it, e.g. when: {gt: 20}")
        ok = False
    when = compile_event_value_test(rule.get("when"), sink, line_of(rule, "when"), key="when", operands=operands)
    for_ms = sink.duration_ms(rule["for"], line_of(rule, "for"), "for") if "for" in rule else None
    if not ok or not isinstance(metric, str) or period is None or ("for" in rule and for_ms is None):
        return None
    return RegisterTrigger(metric, agg, period, when, for_ms, max_samples)


# --- status ---------------------------------------------------------------------------------------

class _StatusKind(Trigger):
    """StatusTrigger's class constants (see Trigger)."""

    kind = "status"
    on_transitions = True


@dataclass(frozen=True, eq=False)
class StatusTrigger(_StatusKind):
    """Fires on status transitions (vigil.Alert records) whose from/to states match."""

    from_state: ValueTest
    to_state: ValueTest

    def on_transition(self, alert: Mapping[str, Any], time_ms: int) -> Hit | None:
        """A hit when the transition's states match, else None."""
        if self.from_state(alert.get("from_state")) and self.to_state(alert.get("to_state")):
            return Hit(f"status:{event_ref(alert)}", alert.get("to_state"), time_ms)
        return None


def _state_test(spec: Any, sink: ErrorSink, line: int, key: str) -> ValueTest:
    if spec is None:
        return lambda _: True
    names = spec if isinstance(spec, list) else [spec]
    allowed = (*_STATES, "NONE") if key == "from" else _STATES
    for name in names:
        if not isinstance(name, str) or (not any(c in name for c in "*?[") and name.upper() not in allowed):
            sink.add(line, f"status.{key}: {name!r} is not a state; use one of {', '.join(allowed)}")
    spec = {"in": spec} if isinstance(spec, list) else spec
    return compile_value_test(spec, sink, line, key=f"{key}_state")


def _parse_status(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> StatusTrigger | None:
    spec, line = rule["status"], line_of(rule, "status")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        sink.add(line, "`status` must be a mapping like {to: CRITICAL, from: OK} (both optional)")
        return None
    sink.unknown_keys(spec, ("from", "to"), "status")
    return StatusTrigger(_state_test(spec.get("from"), sink, line_of(spec, "from", line), "from"),
                         _state_test(spec.get("to"), sink, line_of(spec, "to", line), "to"))


# --- absent_for -----------------------------------------------------------------------------------

class _AbsentKind(Trigger):
    """AbsentTrigger's class constants (see Trigger)."""

    kind = "absent_for"
    stateful = True
    uses_timers = True


@dataclass(frozen=True, eq=False)
class AbsentTrigger(_AbsentKind):
    """Fires once when a group sees no matching event for `absent_ms`; its next event re-arms it."""

    absent_ms: int

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        if state and time_ms <= state["last"]:
            return Step(state)  # late event: the silence it would end is already judged
        # The event is kept (as JSON) so the absence firing can render templates about it.
        kept = json.loads(json.dumps(event, default=str))
        new_state = {"last": time_ms, "fired": False, "event": kept, "type": event_type, "group": dict(group)}
        return Step(new_state, timer_at_ms=time_ms + self.absent_ms)

    def on_timer(self, state: dict[str, Any] | None, now_ms: int) -> Step:
        if not state or state["fired"]:
            return Step(state)
        deadline = state["last"] + self.absent_ms
        if now_ms < deadline:
            return Step(state, timer_at_ms=deadline)  # woken early: sleep again
        hit = Hit(f"absent:{state['last']}", self.absent_ms / 1000, deadline, state["event"], state["type"])
        return Step({**state, "fired": True}, hit)

    @property
    def span_ms(self) -> int:
        return self.absent_ms

    def active_ms(self, state: Mapping[str, Any]) -> int | None:
        return int(state["last"])

    def held_until_ms(self, state: Mapping[str, Any]) -> int | None:
        return None if state.get("fired") else int(state["last"]) + self.absent_ms


def _parse_absent(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> AbsentTrigger | None:
    ms = sink.duration_ms(rule["absent_for"], line_of(rule, "absent_for"), "absent_for")
    return AbsentTrigger(ms) if ms is not None else None


# --- count ----------------------------------------------------------------------------------------

class _CountKind(Trigger):
    """CountTrigger's class constants (see Trigger)."""

    kind = "count"
    stateful = True


@dataclass(frozen=True, eq=False)
class CountTrigger(_CountKind):
    """Fires when `at_least` matching events fall within `within_ms`; then counts afresh."""

    at_least: int
    within_ms: int

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        times: list[int] = list(state["t"]) if state else []
        bisect.insort(times, time_ms)
        first = bisect.bisect_left(times, times[-1] - self.within_ms)
        times = times[max(first, len(times) - self.at_least):]  # only the newest at_least matter
        if len(times) < self.at_least:
            return Step({"t": times})
        return Step(None, Hit(f"count:{event_ref(event)}", len(times), times[-1]))

    @property
    def span_ms(self) -> int:
        return self.within_ms

    def active_ms(self, state: Mapping[str, Any]) -> int | None:
        times = state.get("t")
        return int(times[-1]) if times else None


def _parse_count(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> CountTrigger | None:
    spec, line = rule["count"], line_of(rule, "count")
    if not isinstance(spec, Mapping):
        sink.add(line, "`count` must be a mapping: {at_least: 5, within: 60s}")
        return None
    sink.unknown_keys(spec, ("at_least", "within"), "count")
    at_least = spec.get("at_least")
    ok = isinstance(at_least, int) and not isinstance(at_least, bool) and 1 <= at_least <= 100_000
    if not ok:
        sink.add(line_of(spec, "at_least", line), "count.at_least must be an integer from 1 to 100000")
    within = sink.duration_ms(spec.get("within"), line_of(spec, "within", line), "count.within")
    return CountTrigger(at_least, within) if ok and isinstance(at_least, int) and within is not None else None


# --- sequence -------------------------------------------------------------------------------------

class _SequenceKind(Trigger):
    """SequenceTrigger's class constants (see Trigger)."""

    kind = "sequence"
    stateful = True
    # Steps are usually different event names about one thing, so group by subject only.
    default_group_by = ("subject",)


@dataclass(frozen=True, eq=False)
class SequenceTrigger(_SequenceKind):
    """Fires when events matching each step arrive in order, all within `within_ms` of the first."""

    steps: tuple[Predicate, ...]
    within_ms: int

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        # partial[k] = latest start of a candidate that has completed k+1 steps (latest start keeps
        # the most time left). Each candidate reads the old snapshot: one event is one step of it.
        old = [s if s is not None and time_ms - s <= self.within_ms else None
               for s in (state["p"] if state else [None] * (len(self.steps) - 1))]
        partial = list(old)
        if self.steps[0](event, event_type):
            partial[0] = time_ms
        for k in range(1, len(self.steps)):
            start = old[k - 1]
            if start is None or not self.steps[k](event, event_type):
                continue
            if k == len(self.steps) - 1:
                return Step(None, Hit(f"sequence:{event_ref(event)}", (time_ms - start) / 1000, time_ms))
            partial[k] = start if partial[k] is None else max(partial[k], start)
        return Step({"p": partial} if any(s is not None for s in partial) else None)

    @property
    def span_ms(self) -> int:
        return self.within_ms

    def active_ms(self, state: Mapping[str, Any]) -> int | None:
        # The latest start of a partial sequence: older ones cannot complete after it plus `within`.
        starts = [int(start) for start in state.get("p", ()) if start is not None]
        return max(starts) if starts else None


def _parse_sequence(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> SequenceTrigger | None:
    spec, line = rule["sequence"], line_of(rule, "sequence")
    if not isinstance(spec, list) or len(spec) < 2:
        sink.add(line, "`sequence` needs a list of at least two steps: [{match: ...}, {match: ...}]")
        return None
    steps: list[Predicate] = []
    for i, step in enumerate(spec):
        step_line = line_of(spec, i, line)
        if not isinstance(step, Mapping) or "match" not in step:
            sink.add(step_line, f"sequence step {i + 1} must be a mapping with `match:`")
            continue
        sink.unknown_keys(step, ("match",), f"sequence step {i + 1}")
        steps.append(compile_match(step["match"], sink, line_of(step, "match", step_line), operands=operands))
    if "within" not in rule:
        sink.add(line, "sequence needs `within:` beside it (how long all steps may take), e.g. within: 10m")
        return None
    within = sink.duration_ms(rule["within"], line_of(rule, "within"), "within")
    if within is None or len(steps) != len(spec):
        return None
    return SequenceTrigger(tuple(steps), within)


# --- schedule -------------------------------------------------------------------------------------

class _ScheduleKind(Trigger):
    """ScheduleTrigger's class constants (see Trigger)."""

    kind = "schedule"
    stateful = True
    uses_timers = True
    default_group_by = ()


@dataclass(frozen=True, eq=False)
class ScheduleTrigger(_ScheduleKind):
    """Fires once per slot of its schedule (app.rules.schedules), per group, after the group's splay.

    Without `match:` the rule has one group and no events: the rules stage starts it (`start`). With
    `match:` each group (e.g. `group_by: [subject]` over heartbeats: one per host) starts on its first
    matching event and is dropped, without firing, once no matching event came for two intervals."""

    rule: str
    schedule: Schedule
    by_events: bool

    @property
    def takes_events(self) -> bool:
        return self.by_events

    def _delay_ms(self, group: Mapping[str, str]) -> int:
        return splay_delay_ms(self.rule, group_key(group.values()), self.schedule.splay_ms)

    def start(self, state: dict[str, Any] | None, now_ms: int, group: Mapping[str, str],
              event: Mapping[str, Any] | None = None) -> Step:
        """Start the group's schedule at `now_ms` (no-op, but re-arming its timer, when started)."""
        if state is not None:
            return Step(state, timer_at_ms=int(state["next"]) + self._delay_ms(state.get("group") or {}))
        kept = json.loads(json.dumps(event, default=str)) if event is not None else None
        slot = self.schedule.next_slot(now_ms)
        new_state = {"next": slot, "last": None, "seen": now_ms if event is not None else None,
                     "group": dict(group), "event": kept}
        return Step(new_state, timer_at_ms=slot + self._delay_ms(group))

    def on_event(self, state: dict[str, Any] | None, event: Mapping[str, Any], event_type: str,
                 time_ms: int, group: Mapping[str, str]) -> Step:
        if state is None:
            return self.start(None, time_ms, group, event)
        seen = state.get("seen")
        # Written at most once per interval (not on every heartbeat): enough to tell a gone target.
        if seen is not None and time_ms - int(seen) < self._interval_ms(int(state["next"])) // 2:
            return Step(state)
        kept = json.loads(json.dumps(event, default=str))
        return Step({**state, "seen": time_ms, "event": kept})

    def _interval_ms(self, slot_ms: int) -> int:
        return self.schedule.next_slot(slot_ms) - slot_ms

    def on_timer(self, state: dict[str, Any] | None, now_ms: int) -> Step:
        if state is None:
            return Step(None)
        group = state.get("group") or {}
        delay = self._delay_ms(group)
        next_ms, last = int(state["next"]), state.get("last")
        slot = due_slot(self.schedule, next_slot_ms=next_ms, last_fired_ms=last, delay_ms=delay, now_ms=now_ms)
        if slot is None:
            if now_ms < next_ms + delay:
                return Step(state, timer_at_ms=next_ms + delay)  # woken early: sleep again
            following = self.schedule.next_slot(max(next_ms, int(last or next_ms)))
            return Step({**state, "next": following}, timer_at_ms=following + delay)
        seen = state.get("seen")
        if self.by_events and seen is not None and int(seen) < slot - 2 * self._interval_ms(slot):
            return Step(None)  # the target went quiet: forget it until it is seen again
        following = self.schedule.next_slot(slot)
        event = self._event(state, slot, slot + delay, group)
        hit = Hit(f"schedule:{slot}", slot, slot + delay, event, "vigil.Event")
        return Step({**state, "next": following, "last": slot}, hit, timer_at_ms=following + delay)

    def _event(self, state: Mapping[str, Any], slot_ms: int, at_ms: int, group: Mapping[str, str]) -> dict[str, Any]:
        """What the firing's templates see as `event`: about the target, at the firing's time."""
        kept = state.get("event") or {}
        subject = str(kept.get("subject") or group.get("subject") or self.rule)
        return {"id": deterministic_id("schedule", self.rule, group_key(group.values()), str(slot_ms)),
                "time": at_ms, "subject": subject, "name": str(kept.get("name") or self.rule), "kind": "ARCHIVE",
                "tags": dict(kept.get("tags") or {}), "text": f"schedule of rule {self.rule}: slot {slot_ms}",
                "schedule": {"slot": slot_ms, "rule": self.rule}}


def _parse_schedule(rule: LineDict, sink: ErrorSink, operands: OperandCompiler | None) -> ScheduleTrigger | None:
    if "every" in rule:
        spec: Any = {"every": rule["every"]}
        line = line_of(rule, "every")
    else:
        spec, line = rule["schedule"], line_of(rule, "schedule")
        if not isinstance(spec, Mapping):
            sink.add(line, 'schedule must be a mapping: {cron: "*/30 * * * *", splay: 10m} or {every: 1h}')
            return None
        sink.unknown_keys(spec, ("cron", "every", "splay"), "schedule")

    def duration_ms(value: Any, key: str) -> int:
        ms = sink.duration_ms(value, line_of(spec, key, line), f"schedule.{key}")
        if ms is None:
            raise ScheduleError("", key)  # reported above
        return ms

    try:
        schedule = schedule_from_spec(dict(spec), duration_ms)
    except ScheduleError as exc:
        if str(exc):
            sink.add(line_of(spec, exc.key, line) if exc.key else line, f"schedule: {exc}")
        return None
    name = rule.get("name")
    return ScheduleTrigger(str(name), schedule, by_events="match" in rule)


_PARSERS: Final[dict[str, Callable[[LineDict, ErrorSink, OperandCompiler | None], Trigger | None]]] = {
    "register": _parse_register,
    "status": _parse_status,
    "absent_for": _parse_absent,
    "count": _parse_count,
    "sequence": _parse_sequence,
    "schedule": _parse_schedule,
    "every": _parse_schedule,
}


def parse_trigger(rule: LineDict, sink: ErrorSink, *, operands: OperandCompiler | None = None) -> Trigger | None:
    """The rule's trigger (MatchTrigger when it has none), or None after reporting errors.
    operands: compiles operands looked up per event (`when`, sequence steps: app.lookups.operands)."""
    chosen = [key for key in TRIGGER_KEYS if key in rule]
    if len(chosen) > 1:
        sink.add(line_of(rule, chosen[1]),
                 f"a rule has exactly one trigger, found {len(chosen)}: {', '.join(chosen)}; "
                 "split it into separate rules")
        return None
    for companion, owner in COMPANION_KEYS.items():
        if companion in rule and owner not in chosen:
            sink.add(line_of(rule, companion), f"`{companion}` only applies to a `{owner}` trigger")
    if not chosen:
        return MatchTrigger()
    return _PARSERS[chosen[0]](rule, sink, operands)
