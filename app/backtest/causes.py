"""Which events caused a firing, for the backtest report.

An action names one cause (`event_id`: the event that made its rule fire, the transition's cause,
or the last event before a silence). Triggers that fire on several events keep only times in their
state, so the events are found again here: every record a group's evaluation received is noted
(time, id, record) for as long as a rule of the set may look back, and a firing of

    count      names the `at_least` newest matching events within `within` up to its cause;
    register   the matching events with the metric within `period` (at most `max_samples`);
    sequence   one event per step, the latest that fits, walking back from its cause within `within`;
    the others their cause alone.

Pure (no Kafka, no runtime).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from app.rules.loader import RuleSet
from app.rules.spec import Rule
from app.rules.triggers import CountTrigger, RegisterTrigger, SequenceTrigger

__all__ = ["CauseLog", "look_back_window_ms"]

#: Records kept per group at most (a group shared by busy rules may see many within a window).
MAX_NOTED: Final = 4096
#: Records are kept this much longer than the longest look-back: a batch is noted before it is
#: evaluated, so a record may be noted before an earlier one's firing is looked at (batches span
#: a slice of event time, 10 s by default).
MARGIN_MS: Final = 60_000


class CauseLog:
    """The recent records of every group of one rule set, to name the events behind a firing."""

    def __init__(self, ruleset: RuleSet, *, window_ms: int | None = None) -> None:
        """window_ms: keep at least this look-back (a share of a rule set keeps what the whole set's
        log would: app.backtest.sharing)."""
        own = look_back_window_ms(ruleset)
        #: how far back (event time) a firing may look; None: no rule needs more than its cause
        self.window_ms: int | None = None if own is None else max(own, window_ms or 0)
        self.ruleset = ruleset
        self._noted: dict[str, deque[tuple[int, str | None, Mapping[str, Any], str]]] = {}

    @property
    def active(self) -> bool:
        """Whether any rule fires on several events (else nothing needs noting)."""
        return self.window_ms is not None

    def note(self, group_key: str, time_ms: int, record: Mapping[str, Any], type_name: str) -> None:
        """A record the group's evaluation receives (call before evaluating it)."""
        # Re-inserted last: groups stay in the order of their latest record, quiet ones first.
        noted = self._noted.pop(group_key, None)
        if noted is None:
            noted = deque(maxlen=MAX_NOTED)
        self._noted[group_key] = noted
        event_id = record.get("id")
        noted.append((time_ms, event_id if isinstance(event_id, str) else None, record, type_name))
        if self.window_ms is not None:
            oldest = time_ms - self.window_ms - MARGIN_MS
            while noted[0][0] < oldest:
                noted.popleft()
            self._forget_quiet(oldest - MARGIN_MS)

    def _forget_quiet(self, before_ms: int) -> None:
        """Forget groups whose newest record is older than `before_ms`: their next record (late by a
        slice at most) would trim every one of them anyway, and a fleet whose identities come and go
        must not leave a group's records behind per identity gone."""
        noted_by_group = self._noted
        while noted_by_group:
            first = next(iter(noted_by_group))
            if noted_by_group[first][-1][0] >= before_ms:
                return
            del noted_by_group[first]

    def causes(self, rule_name: str, group_key: str, event_id: str | None, time_ms: int) -> tuple[str, ...]:
        """The ids of the events behind a firing of `rule_name` for `group_key` at `time_ms` whose
        cause is `event_id` (just the cause when the rule looks at one event)."""
        own = (event_id,) if event_id else ()
        rule = self.ruleset.get(rule_name)
        if rule is None or _look_back_ms(rule) is None or event_id is None:
            return own
        noted = self._noted.get(group_key)
        if not noted:
            return own
        upto = _last_index_of(noted, event_id)
        if upto is None:
            return own
        entries = [noted[i] for i in range(upto + 1)]
        trigger = rule.trigger
        if isinstance(trigger, SequenceTrigger):
            found = _sequence_steps(rule, trigger, entries, time_ms)
        elif isinstance(trigger, CountTrigger):
            found = [e for e in entries if e[0] >= time_ms - trigger.within_ms and rule.match(e[2], e[3])]
            found = sorted(found, key=lambda e: e[0])[-trigger.at_least:]
        elif isinstance(trigger, RegisterTrigger):
            found = [e for e in entries if e[0] > time_ms - trigger.period_ms and rule.match(e[2], e[3])
                     and trigger.value_of(e[2], e[3]) is not None]
            found = sorted(found, key=lambda e: e[0])[-trigger.max_samples:]
        else:  # pragma: no cover - _look_back_ms covers exactly the kinds above
            return own
        ids = tuple(dict.fromkeys(e[1] for e in found if e[1] is not None))
        return ids if event_id in ids else (*ids, event_id)


def look_back_window_ms(ruleset: RuleSet) -> int | None:
    """The longest look-back of the enabled rules of `ruleset` (None: none looks back)."""
    windows = [w for rule in ruleset.enabled if (w := _look_back_ms(rule)) is not None]
    return max(windows) if windows else None


def _look_back_ms(rule: Rule) -> int | None:
    trigger = rule.trigger
    if isinstance(trigger, CountTrigger | SequenceTrigger):
        return trigger.within_ms
    if isinstance(trigger, RegisterTrigger):
        return trigger.period_ms
    return None


def _last_index_of(noted: deque[tuple[int, str | None, Mapping[str, Any], str]], event_id: str) -> int | None:
    for i in range(len(noted) - 1, -1, -1):
        if noted[i][1] == event_id:
            return i
    return None


def _sequence_steps(rule: Rule, trigger: SequenceTrigger, entries: list[tuple[int, str | None, Mapping[str, Any], str]],
                    time_ms: int) -> list[tuple[int, str | None, Mapping[str, Any], str]]:
    """The latest event for each step, walking back from the cause (the last step)."""
    steps = list(trigger.steps)
    found = [entries[-1]]
    step = len(steps) - 2
    for entry in reversed(entries[:-1]):
        if step < 0 or entry[0] < time_ms - trigger.within_ms:
            break
        if rule.match(entry[2], entry[3]) and steps[step](entry[2], entry[3]):
            found.append(entry)
            step -= 1
    return list(reversed(found))
