"""The rules engine: events, status transitions and timers in; firings out. Pure and event-time driven.

State lives in the given KeyValueStore (JSON-compatible values) under readable keys:
    "<rule>/<trigger kind>/<group key>"   trigger state of one group (e.g. "disk-full/register/web1/disk")
    "<rule>/throttle/<group key>"         time (ms) of the group's last firing
Absence timers use the trigger-state key as timer key, so `on_timer(key, ...)` finds its state.
Rule names cannot contain '/', so the first two parts of a key are unambiguous.

Expiry (app.runtime.expiry): every stored key has an event-time timer, EXPIRY_TIMER_PREFIX + key,
moved when its activity enters a later time bucket; when it fires, `expire` forgets the state if
its group was quiet for the rule's retention (never shorter than what the trigger or throttle
itself spans) and it owes no firing (an absence not yet judged waits for its alert).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.rules.fields import EVENT_TYPE, group_key, group_value
from app.rules.loader import RuleSet
from app.rules.spec import Rule
from app.rules.triggers import Hit, ScheduleTrigger, Step
from app.runtime.expiry import ExpiryMetrics, check_at_ms, decide, moves_check
from app.runtime.types import KeyValueStore, TimerService

__all__ = ["ALERT_TYPE", "EXPIRY_TIMER_PREFIX", "Firing", "InvalidEventError", "Matched", "ReloadReport",
           "RuleEngine", "RuleIndex", "rule_group", "state_key"]

log = logging.getLogger(__name__)

#: Avro full name of status transitions (what `on_transition` gets and `match` sees as `type`).
ALERT_TYPE: Final = "vigil.Alert"
#: Timer keys of expiry checks: this + the state key (rule names start with a letter or digit).
EXPIRY_TIMER_PREFIX: Final = "~expire/"
#: The state part of throttle keys ("<rule>/throttle/<group>").
_THROTTLE: Final = "throttle"


class InvalidEventError(ValueError):
    """The record cannot be evaluated (not a mapping, or no integer `time`): dead-letter it."""


@dataclass(init=False, slots=True)
class Firing:
    """A rule fired for one group: everything needed to render its actions deterministically.
    Treat it as immutable (its __init__ is written out so that mypyc compiles it, as for
    app.rules.triggers.Step)."""

    rule: str
    group_key: str
    group: Mapping[str, str]  # group_by key -> value
    trigger: str  # trigger kind: match, register, status, absent_for, count, sequence
    trigger_id: str  # deterministic from the triggering facts (event id, silence start, ...)
    event: Mapping[str, Any]  # the cause: event, alert, or (absence) the last event seen
    event_type: str
    value: Any  # register aggregate, count, to_state, silence/sequence seconds; None for match
    time_ms: int  # event time of the firing (absence: the deadline that passed)

    def __init__(self, rule: str, group_key: str, group: Mapping[str, str], trigger: str, trigger_id: str,
                 event: Mapping[str, Any], event_type: str, value: Any, time_ms: int) -> None:
        self.rule = rule
        self.group_key = group_key
        self.group = group
        self.trigger = trigger
        self.trigger_id = trigger_id
        self.event = event
        self.event_type = event_type
        self.value = value
        self.time_ms = time_ms


@dataclass(frozen=True)
class ReloadReport:
    """What `replace_ruleset` did with state: rules whose state was kept, reset, added, removed."""

    kept: tuple[str, ...]
    reset: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]


def state_key(rule: str, part: str, group: str) -> str:
    """The store/timer key for one rule, state part and group."""
    return f"{rule}/{part}/{group}"


def _time_of(record: Any, what: str) -> int:
    if not isinstance(record, Mapping):
        raise InvalidEventError(f"{what} must be a mapping, got {type(record).__name__}")
    value = record.get("time")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(f"{what} {record.get('id', '?')!r} has no valid `time` (integer ms since "
                                f"the epoch), got {value!r}")
    return value


def rule_group(rule: Rule, record: Mapping[str, Any], event_type: str) -> dict[str, str]:
    """The group_by values of `record` for `rule` (group_by key -> value)."""
    return {ref.key: group_value(ref.get(record, event_type)) for ref in rule.group_by}


#: One rule an event matches: the rule, its group_by values for the event and their group key.
Matched = tuple[Rule, dict[str, str], str]


class RuleIndex:
    """The enabled rules of a RuleSet, indexed for dispatch: most rules match one literal event name,
    so most events see few rules. Also answers which groups a record concerns (for repartitioning).

    memo_size > 0: `group_keys` keeps what an event matched (by the record object, up to that many
    records) until `take_matches` has handed it to the evaluation of each of its groups, so a record
    routed and evaluated in one process (a backtest) is matched once, not once per group plus once
    for routing. A worker evaluates its own decoded copy of each record: it leaves the memo off."""

    def __init__(self, ruleset: RuleSet, *, memo_size: int = 0) -> None:
        self.memo_size = memo_size
        #: id(record) -> (record, event type, its matches, groups not yet evaluated)
        self._memo: dict[int, tuple[Any, str, tuple[Matched, ...], list[int]]] = {}
        active = ruleset.enabled
        event_rules = [r for r in active if not r.trigger.on_transitions and r.trigger.takes_events]
        #: schedule rules without `match:`: started by the stage, not by events
        self.timed_rules: tuple[Rule, ...] = tuple(r for r in active if not r.trigger.takes_events)
        self.transition_rules: tuple[Rule, ...] = tuple(r for r in active if r.trigger.on_transitions)
        self._any_name = tuple(r for r in event_rules if r.names is None)
        by_name: dict[str, list[Rule]] = {}
        for rule in event_rules:
            for name in rule.names or ():
                by_name.setdefault(name, []).append(rule)
        order = {rule.name: i for i, rule in enumerate(active)}
        self._by_name = {name: tuple(sorted({*rules, *self._any_name}, key=lambda r: order[r.name]))
                         for name, rules in by_name.items()}

    def event_rules(self, event: Mapping[str, Any]) -> tuple[Rule, ...]:
        """The event rules that may match `event` (its name picks them; `match` still decides)."""
        name = event.get("name")
        return self._by_name.get(name, self._any_name) if isinstance(name, str) else self._any_name

    def event_matches(self, event: Mapping[str, Any], event_type: str = EVENT_TYPE) -> tuple[Matched, ...]:
        """The event rules `event` matches, with their groups, in rule order."""
        matched: list[Matched] = []
        for rule in self.event_rules(event):
            if rule.match(event, event_type):
                group = rule_group(rule, event, event_type)
                matched.append((rule, group, group_key(group.values())))
        return tuple(matched)

    def routes_nothing(self, record: Any, event_type: str = EVENT_TYPE) -> bool:
        """True when `group_keys` certainly finds no group and raises nothing for `record`: its
        `time` is an integer and no rule can match it (no status rule for a transition; no rule of
        its event name, nor one of any name, for anything else). A cheap pre-check for routers."""
        if type(record) is not dict or type(record.get("time")) is not int:
            return False
        if event_type == ALERT_TYPE:
            return not self.transition_rules
        return not self.event_rules(record)

    def group_keys(self, record: Mapping[str, Any], event_type: str = EVENT_TYPE) -> list[str]:
        """The distinct group keys of the rules `record` matches, in rule order (a vigil.Alert is
        matched against status rules, anything else against event rules); raises InvalidEventError."""
        if event_type == ALERT_TYPE:
            time_ms = _time_of(record, "transition")
            # Status rules are stateless: a transition whose states they do not want concerns no group.
            rules = [r for r in self.transition_rules if r.match(record, event_type)
                     and r.trigger.on_transition(record, time_ms)]  # type: ignore[attr-defined]
            return list(dict.fromkeys(group_key(rule_group(rule, record, event_type).values()) for rule in rules))
        _time_of(record, "event")
        matched = self.event_matches(record, event_type)
        keys = list(dict.fromkeys(m[2] for m in matched))
        if self.memo_size > 0 and keys:
            memo = self._memo
            if len(memo) >= self.memo_size:  # records routed to other processes are never taken here
                memo.clear()
            memo[id(record)] = (record, event_type, matched, [len(keys)])
        return keys

    def forget_matches(self) -> None:
        """Drop every remembered match (records routed to be evaluated elsewhere are never taken)."""
        self._memo.clear()

    def take_matches(self, event: Mapping[str, Any], event_type: str) -> tuple[Matched, ...] | None:
        """What `group_keys` found for this very record object (None when it is not remembered); the
        memo forgets it once every one of its groups took it."""
        entry = self._memo.get(id(event))
        if entry is None or entry[0] is not event or entry[1] != event_type:
            return None
        left = entry[3]
        left[0] -= 1
        if left[0] <= 0:
            del self._memo[id(event)]
        return entry[2]


class RuleEngine:
    """Evaluates a RuleSet. Not thread-safe: one engine per partition, like its store."""

    def __init__(self, ruleset: RuleSet, store: KeyValueStore, timers: TimerService, *,
                 index: RuleIndex | None = None, state_retention_ms: int = 0,
                 expiry: ExpiryMetrics | None = None) -> None:
        """index: the RuleIndex of `ruleset` to dispatch with (one the router shares, for its memo);
        state_retention_ms: how long a quiet group's state is kept unless its rule says otherwise
        (0: forever); expiry: where forgotten state is counted."""
        self.store = store
        self.timers = timers
        self.state_retention_ms = state_retention_ms
        self.expiry = expiry or ExpiryMetrics()
        self._install(ruleset, index)

    @property
    def ruleset(self) -> RuleSet:
        """The rules being evaluated."""
        return self._ruleset

    def _install(self, ruleset: RuleSet, index: RuleIndex | None = None) -> None:
        self._ruleset = ruleset
        self._index = index if index is not None else RuleIndex(ruleset)
        #: rule -> (retention of its trigger state, of its throttle); 0: kept forever
        self._retention_ms: dict[str, tuple[int, int]] = {
            rule.name: self._retentions(rule) for rule in ruleset.enabled}

    def _retentions(self, rule: Rule) -> tuple[int, int]:
        base = self.state_retention_ms if rule.state_retention_ms is None else rule.state_retention_ms
        if base <= 0:
            return 0, 0
        return max(base, rule.trigger.span_ms), max(base, rule.throttle_ms or 0)

    # --- inputs -----------------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any], event_type: str = EVENT_TYPE, *,
                 only_group: str | None = None) -> list[Firing]:
        """Evaluate one event (an Avro-shaped dict of type `event_type`); raises InvalidEventError.

        only_group: evaluate only rules whose group key for this event is `only_group` (a stage that
        repartitions by group key receives one copy of the event per distinct group key)."""
        time_ms = _time_of(event, "event")
        firings: list[Firing] = []
        index = self._index
        matched = index.take_matches(event, event_type) if only_group is not None else None
        for rule, group, gkey in index.event_matches(event, event_type) if matched is None else matched:
            if only_group is not None and gkey != only_group:
                continue
            key = state_key(rule.name, rule.trigger.kind, gkey)
            state = self._load(key) if rule.trigger.stateful else None
            step = rule.trigger.on_event(state, event, event_type, time_ms, group)
            firing = self._apply(rule, key, state, step, group, event, event_type)
            if firing:
                firings.append(firing)
        return firings

    def on_transition(self, alert: Mapping[str, Any], *, only_group: str | None = None) -> list[Firing]:
        """Evaluate one status transition (a vigil.Alert-shaped dict); raises InvalidEventError.
        only_group: as for `on_event`."""
        time_ms = _time_of(alert, "transition")
        firings: list[Firing] = []
        for rule in self._index.transition_rules:
            if not rule.match(alert, ALERT_TYPE):
                continue
            group = rule_group(rule, alert, ALERT_TYPE)
            if only_group is not None and group_key(group.values()) != only_group:
                continue
            hit = rule.trigger.on_transition(alert, time_ms)  # type: ignore[attr-defined]
            if hit:
                firing = self._fire(rule, group, hit, alert, ALERT_TYPE)
                if firing:
                    firings.append(firing)
        return firings

    def on_timer(self, key: str, now_ms: int, payload: Any = None) -> list[Firing]:
        """A timer this engine armed has come due (`now_ms`: the time it is judged at)."""
        rule_name, _, rest = key.partition("/")
        kind, _, _ = rest.partition("/")
        rule = self._ruleset.get(rule_name)
        if rule is None or not rule.enabled or rule.trigger.kind != kind:
            return []  # the rule was removed or changed since the timer was armed
        state = self._load(key)
        step = rule.trigger.on_timer(state, now_ms)
        group = dict(state.get("group", {})) if state else {}
        hit = step.hit
        event = hit.event if hit and hit.event is not None else {}
        event_type = hit.event_type if hit and hit.event_type else EVENT_TYPE
        return [f for f in [self._apply(rule, key, state, step, group, event, event_type)] if f]

    def start_schedule(self, rule_name: str, now_ms: int) -> list[Firing]:
        """Start the schedule of a rule without `match:` (its one group) unless it runs already; re-arms
        its timer either way. Nothing fires here (the timer does)."""
        rule = self._ruleset.get(rule_name)
        trigger = rule.trigger if rule is not None and rule.enabled else None
        if rule is None or not isinstance(trigger, ScheduleTrigger) or trigger.takes_events:
            return []
        key = state_key(rule.name, trigger.kind, group_key(()))
        state = self._load(key)
        return [f for f in [self._apply(rule, key, state, trigger.start(state, now_ms, {}), {}, {}, EVENT_TYPE)] if f]

    def expire(self, key: str, watermark_ms: int) -> None:
        """The expiry check of state `key` is due at `watermark_ms` (the partition's event time):
        forget the state if its group was quiet for the retention and it owes no firing, else check
        again when app.runtime.expiry.decide says."""
        rule_name, _, rest = key.partition("/")
        part, _, _ = rest.partition("/")
        rule = self._ruleset.get(rule_name)
        state = self.store.get(key)
        if rule is None or not rule.enabled or state is None:
            return  # gone already (a changed or removed rule's state is dropped on reload)
        trigger_retention, throttle_retention = self._retention_ms.get(rule_name, (0, 0))
        if part == _THROTTLE:
            active, held, retention = (state if isinstance(state, int) else None), None, throttle_retention
        elif part == rule.trigger.kind and isinstance(state, dict):
            active, held = rule.trigger.active_ms(state), rule.trigger.held_until_ms(state)
            retention = trigger_retention
        else:
            return
        if active is None:
            return
        verdict = decide(active_ms=active, watermark_ms=watermark_ms, retention_ms=retention, held_until_ms=held)
        if verdict.expire:
            del self.store[key]
            self.expiry.count(part)
        elif verdict.recheck_at_ms is not None:
            self.timers.schedule(EXPIRY_TIMER_PREFIX + key, verdict.recheck_at_ms, kind="event")

    def _arm_expiry(self, key: str, before_ms: int | None, after_ms: int | None, retention_ms: int) -> None:
        """(Re)arm the expiry check of `key` when its activity moved to a later bucket."""
        if after_ms is not None and moves_check(before_ms, after_ms, retention_ms):
            self.timers.schedule(EXPIRY_TIMER_PREFIX + key, check_at_ms(after_ms, retention_ms), kind="event")

    def replace_ruleset(self, ruleset: RuleSet) -> ReloadReport:
        """Hot reload: keep the state of rules whose match/trigger/group/throttle are unchanged,
        drop (and cancel timers of) the state of rules that changed, were disabled or removed."""
        old = {r.name: r for r in self._ruleset.enabled}
        new = {r.name: r for r in ruleset.enabled}
        kept = tuple(n for n in new if n in old and old[n].state_fingerprint == new[n].state_fingerprint)
        reset = tuple(n for n in new if n in old and n not in kept)
        removed = tuple(n for n in old if n not in new)
        stale = {*reset, *removed}
        if stale:
            doomed = [key for key, _ in self.store.items() if key.partition("/")[0] in stale]
            for key in doomed:
                trigger = old[key.partition("/")[0]].trigger
                if trigger.uses_timers and key.split("/", 2)[1] == trigger.kind:
                    self.timers.cancel(key)
                del self.store[key]
        self._install(ruleset)
        added = tuple(n for n in new if n not in old)
        if stale or added:
            log.info("rules reloaded: kept %d, reset %s, added %s, removed %s", len(kept), reset, added, removed)
        return ReloadReport(kept, reset, added, removed)

    # --- internals --------------------------------------------------------------------------------

    def _load(self, key: str) -> dict[str, Any] | None:
        state = self.store.get(key)
        return state if isinstance(state, dict) else None

    def _apply(self, rule: Rule, key: str, old: dict[str, Any] | None, step: Step, group: Mapping[str, str],
               event: Mapping[str, Any], event_type: str) -> Firing | None:
        if rule.trigger.stateful and step.state is not old:
            if step.state is None:
                if key in self.store:
                    del self.store[key]
            else:
                self.store[key] = step.state
                retention_ms = self._retention_ms[rule.name][0]
                if retention_ms:
                    trigger = rule.trigger
                    self._arm_expiry(key, trigger.active_ms(old) if old else None, trigger.active_ms(step.state),
                                     retention_ms)
        if step.timer_at_ms is not None:
            self.timers.schedule(key, step.timer_at_ms, kind="wall", payload={"rule": rule.name})
        return self._fire(rule, group, step.hit, event, event_type) if step.hit else None

    def _fire(self, rule: Rule, group: Mapping[str, str], hit: Hit, event: Mapping[str, Any],
              event_type: str) -> Firing | None:
        gkey = group_key(group.values())
        if rule.throttle_ms is not None:
            throttle_key = state_key(rule.name, "throttle", gkey)
            last = self.store.get(throttle_key)
            if isinstance(last, int) and hit.time_ms - last < rule.throttle_ms:
                return None
            self.store[throttle_key] = hit.time_ms
            self._arm_expiry(throttle_key, last if isinstance(last, int) else None, hit.time_ms,
                             self._retention_ms[rule.name][1])
        return Firing(rule=rule.name, group_key=gkey, group=dict(group), trigger=rule.trigger.kind,
                      trigger_id=hit.trigger_id, event=event, event_type=event_type, value=hit.value,
                      time_ms=hit.time_ms)
