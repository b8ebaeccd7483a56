"""Run rules over a recorded stream, without Kafka: `vigil rules test` and rule unit tests.

Everything is driven by event time: a timer fires as soon as an input's time passes it (before that
input is evaluated), and at the end of input nothing more fires unless `until_ms` says how far to
let time run. State lives in dicts, so a run is deterministic: the same input gives the same
actions with the same ids.

Input records are dicts, one per line in JSONL files:
  - vigil.Event-shaped (defaults filled in; `extended` may be given as an object; `kind` any case),
  - a custom record: `{"type": "acme.Deploy", "subject": ..., "name": ..., "time": ..., <fields>}`,
  - a status transition: vigil.Alert-shaped (has `from_state` and `to_state`).
"""

from __future__ import annotations

import difflib
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.model.events import Alert, Event
from app.model.ids import deterministic_id
from app.rules.actions import RenderedAction, RenderFailure, render_actions
from app.rules.engine import Firing, RuleEngine
from app.rules.fields import EVENT_TYPE
from app.rules.loader import RuleSet, load_rules
from app.rules.source import RuleError

__all__ = [
    "EventTimeTimers",
    "InputError",
    "OfflineResult",
    "RulesInvalidError",
    "action_differences",
    "compare_actions",
    "normalise_record",
    "read_jsonl",
    "run_offline",
    "simulate",
]


class InputError(ValueError):
    """A bad input record or line; the message says which one."""


class RulesInvalidError(Exception):
    """The rules directory has errors; `errors` lists them (`file:line: message`)."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__(f"{len(errors)} error(s) in rule files:\n" + "\n".join(map(str, errors)))
        self.errors = errors


class EventTimeTimers:
    """TimerService for offline runs: every timer (wall or event) fires by event time."""

    def __init__(self) -> None:
        self._timers: dict[str, tuple[int, int, Any]] = {}  # key -> (at_ms, version, payload)
        # A heap keeps pop_due O(log n) on long recordings; re-armed/cancelled entries are skipped
        # lazily by their version.
        self._heap: list[tuple[int, str, int]] = []
        self._version = 0

    def schedule(self, key: str, at_ms: int, *, kind: str = "wall", payload: Any = None) -> None:
        """Arm (or re-arm) the timer `key`."""
        self._version += 1
        self._timers[key] = (at_ms, self._version, payload)
        heapq.heappush(self._heap, (at_ms, key, self._version))

    def cancel(self, key: str) -> None:
        """Disarm `key` if armed."""
        self._timers.pop(key, None)

    def pop_due(self, now_ms: int) -> tuple[str, int, Any] | None:
        """The earliest timer due at `now_ms` (ties by key), removed; None when none is due."""
        while self._heap and self._heap[0][0] <= now_ms:
            at_ms, key, version = heapq.heappop(self._heap)
            current = self._timers.get(key)
            if current is not None and current[1] == version:
                del self._timers[key]
                return key, at_ms, current[2]
        return None

    def __len__(self) -> int:
        return len(self._timers)


@dataclass
class OfflineResult:
    """Everything a run produced, in order."""

    actions: list[RenderedAction] = field(default_factory=list)
    failures: list[RenderFailure] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())


def normalise_record(record: Any, index: int) -> tuple[str, dict[str, Any], str]:
    """("event" | "transition", Avro-shaped record, type full name) for input record number `index`."""
    if not isinstance(record, Mapping):
        raise InputError(f"record {index}: expected a JSON object, got {type(record).__name__}")
    data = dict(record)
    if isinstance(data.get("time"), bool) or not isinstance(data.get("time"), int):
        # Never default to "now": offline runs must not depend on the clock.
        raise InputError(f"record {index}: `time` must be an integer (ms since the epoch), got {data.get('time')!r}")
    canonical = json.dumps(data, sort_keys=True, default=str)
    # Ids are derived from position and content so reruns of the same file give the same action ids.
    data.setdefault("id", deterministic_id("offline", str(index), canonical))
    try:
        if "from_state" in data and "to_state" in data:
            return "transition", Alert.from_record(data).to_record(), "vigil.Alert"
        event_type = data.pop("type", None) or EVENT_TYPE
        if event_type != EVENT_TYPE:
            missing = [k for k in ("subject", "name", "time") if k not in data]
            if missing:
                raise InputError(f"record {index}: custom record {event_type} lacks {', '.join(missing)}")
            return "event", data, str(event_type)
        if isinstance(data.get("kind"), str):
            data["kind"] = data["kind"].upper()
        return "event", Event.model_validate(data).to_record(), EVENT_TYPE
    except ValidationError as exc:
        raise InputError(f"record {index}: not a valid record: {_validation_message(exc)}") from None


def read_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file (blank lines and lines starting with # skipped)."""
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON: {exc.msg}") from None
            if not isinstance(value, dict):
                raise InputError(f"{path}:{number}: expected a JSON object per line")
            yield value


def simulate(ruleset: RuleSet, records: Iterable[Mapping[str, Any]], *, until_ms: int | None = None) -> OfflineResult:
    """Run `ruleset` over `records` in order (event time drives timers); see the module doc."""
    timers = EventTimeTimers()
    engine = RuleEngine(ruleset, {}, timers)  # type: ignore[arg-type]  # a dict is a KeyValueStore
    result = OfflineResult()

    def emit(firings: list[Firing]) -> None:
        for firing in firings:
            result.firings.append(firing)
            rule = ruleset.get(firing.rule)
            if rule is None:  # cannot happen: the engine only fires rules of its own rule set
                raise RuntimeError(f"firing of unknown rule {firing.rule!r}")
            for rendered in render_actions(firing, rule):
                if isinstance(rendered, RenderedAction):
                    result.actions.append(rendered)
                else:
                    result.failures.append(rendered)

    def advance(now_ms: int) -> None:
        while (due := timers.pop_due(now_ms)) is not None:
            key, at_ms, payload = due
            emit(engine.on_timer(key, at_ms, payload))

    started = False
    for index, record in enumerate(records, 1):
        kind, normalised, event_type = normalise_record(record, index)
        advance(normalised["time"])
        if not started:  # schedules without `match:` start with the first record, as in the stage
            started = True
            for rule in ruleset.enabled:
                if not rule.trigger.takes_events:
                    emit(engine.start_schedule(rule.name, normalised["time"]))
        emit(engine.on_transition(normalised) if kind == "transition" else engine.on_event(normalised, event_type))
    if until_ms is not None:
        advance(until_ms)
    return result


def run_offline(rules_dir: Path | str, events: Iterable[Mapping[str, Any]], *,
                until_ms: int | None = None) -> list[RenderedAction]:
    """Load `rules_dir` (raising RulesInvalidError on any error) and return the actions `events` cause."""
    ruleset, errors = load_rules(rules_dir)
    if errors:
        raise RulesInvalidError(errors)
    return simulate(ruleset, events, until_ms=until_ms).actions


_OPTIONAL_FIELDS = ("params", "id", "time_ms", "group_key", "event_id", "trace_id", "deadline_ms")


def _as_dict(action: RenderedAction | Mapping[str, Any]) -> Mapping[str, Any]:
    return action.to_dict() if isinstance(action, RenderedAction) else action


def _summary(action: Mapping[str, Any]) -> str:
    params = json.dumps(action.get("params", {}), sort_keys=True)
    return f"{action.get('rule')} {action.get('type')} -> {action.get('target')} {params}"


def compare_actions(actual: Sequence[RenderedAction | Mapping[str, Any]],
                    expected: Sequence[Mapping[str, Any]]) -> list[str]:
    """Differences between actual and expected actions (empty when they agree).

    Actions are aligned in order by (rule, type, target); for aligned pairs, every other field the
    expected action states (params, id, time_ms, group_key, event_id, trace_id, deadline_ms) must
    be equal. So ordering, content and, when given, ids and times are all checked.
    """
    return [message for _, message in action_differences(actual, expected)]


def action_differences(actual: Sequence[RenderedAction | Mapping[str, Any]],
                       expected: Sequence[Mapping[str, Any]]) -> list[tuple[int | None, str]]:
    """`compare_actions`' differences, each with the index of the expected action it is about
    (None: an action nobody expected), e.g. to report each expectation as a test case."""
    got = [_as_dict(a) for a in actual]
    want = [dict(e) for e in expected]
    for e in want:
        if "time" in e and "time_ms" not in e:
            e["time_ms"] = e.pop("time")

    def key(a: Mapping[str, Any]) -> tuple[Any, ...]:
        return a.get("rule"), a.get("type"), a.get("target")

    diffs: list[tuple[int | None, str]] = []
    matcher = difflib.SequenceMatcher(None, [key(a) for a in got], [key(e) for e in want], autojunk=False)
    for op, a0, a1, e0, e1 in matcher.get_opcodes():
        if op in ("equal", "replace"):
            for offset in range(min(a1 - a0, e1 - e0)):
                a, e = got[a0 + offset], want[e0 + offset]
                where = f"action #{a0 + offset + 1} (expected #{e0 + offset + 1})"
                for name in ("rule", "type", "target", *_OPTIONAL_FIELDS):
                    if name in e and a.get(name) != e[name]:
                        diffs.append((e0 + offset, f"{where}: {name} differs: expected {e[name]!r}, "
                                                   f"got {a.get(name)!r}"))
            a0, e0 = a0 + min(a1 - a0, e1 - e0), e0 + min(a1 - a0, e1 - e0)
        diffs.extend((None, f"unexpected action #{i + 1}: {_summary(got[i])}") for i in range(a0, a1))
        diffs.extend((i, f"missing action (expected #{i + 1}): {_summary(want[i])}") for i in range(e0, e1))
    return diffs
