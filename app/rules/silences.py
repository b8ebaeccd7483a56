"""Silences (maintenance windows): while one covers a firing's action, the action is not sent but
recorded as suppressed. Pure: the record format, validation, matching, and the in-memory view.

A silence lives in the compacted `silences` topic: key = silence id, value = JSON
    {"id": ..., "match": {FIELD: GLOB, ...}, "rule": GLOB | null, "until_ms": ..., "reason": ...,
     "created_ms": ...}
and a tombstone (null value) removes it. FIELD is any rule field key of the cause event (`subject`,
`name`, `tags.env`, `data.region`, ...) or one of the action's own fields: `target`, `action` (its
type, e.g. shell) and `group` (the group key). A silence covers an action when the wall clock is
before `until_ms`, the rule name matches `rule` (when given) and every FIELD glob matches.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from app.globs import glob_matcher
from app.rules.fields import MISSING, FieldRef, as_text, parse_field

__all__ = [
    "ACTION_FIELDS",
    "ActionFacts",
    "Silence",
    "SilenceError",
    "SilenceSet",
    "compile_silence_match",
    "decode_silence",
    "encode_silence",
]

log = logging.getLogger(__name__)

#: Match keys about the action rather than its cause event.
ACTION_FIELDS: Final = ("target", "action", "group")


class SilenceError(ValueError):
    """A silence record or `--match` is invalid; the message says what to write instead."""


@dataclass(frozen=True, slots=True)
class ActionFacts:
    """What a silence is matched against: the action and the event that caused it."""

    rule: str
    action_type: str
    target: str
    group_key: str
    event: Mapping[str, Any]
    event_type: str


Matcher = Callable[[ActionFacts], bool]


def _field_matcher(key: str, pattern: str) -> Matcher:
    matches = glob_matcher(pattern)
    if key in ACTION_FIELDS:
        attribute = {"target": "target", "action": "action_type", "group": "group_key"}[key]
        return lambda facts: bool(matches(getattr(facts, attribute)))
    ref = parse_field(key)
    if not isinstance(ref, FieldRef):
        raise SilenceError(f"--match {key}=...: {ref}; or one of the action's fields: {', '.join(ACTION_FIELDS)}")

    def event_field(facts: ActionFacts) -> bool:
        value = ref.get(facts.event, facts.event_type)
        text = None if value is MISSING else as_text(value)
        return text is not None and bool(matches(text))

    return event_field


def compile_silence_match(match: Mapping[str, str]) -> Matcher:
    """One predicate for all `match` entries (every glob must match); raises SilenceError."""
    if not isinstance(match, Mapping):
        raise SilenceError("`match` must be a mapping of FIELD to GLOB, e.g. {\"subject\": \"web1\"}")
    checks: list[Matcher] = []
    for key, pattern in match.items():
        if not isinstance(key, str) or not isinstance(pattern, str):
            raise SilenceError(f"match {key!r}: {pattern!r}: fields and globs must be strings")
        checks.append(_field_matcher(key, pattern))
    return lambda facts: all(check(facts) for check in checks)


@dataclass(frozen=True)
class Silence:
    """One maintenance window."""

    id: str
    match: dict[str, str]
    rule: str | None
    until_ms: int
    reason: str
    created_ms: int
    _matcher: Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.match and self.rule is None:
            raise SilenceError("a silence needs --match FIELD=GLOB or --rule (one that matches everything "
                               "would mute every action)")
        object.__setattr__(self, "_matcher", compile_silence_match(self.match))

    def active(self, now_ms: int) -> bool:
        """True until `until_ms` (wall clock)."""
        return now_ms < self.until_ms

    def covers(self, facts: ActionFacts, now_ms: int) -> bool:
        """True when this silence mutes the action described by `facts` at `now_ms`."""
        if not self.active(now_ms):
            return False
        if self.rule is not None and not glob_matcher(self.rule)(facts.rule):
            return False
        return self._matcher(facts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible record (the topic's value format)."""
        data = asdict(self)
        data.pop("_matcher", None)
        return data


def encode_silence(silence: Silence) -> bytes:
    """The topic value of a silence."""
    return json.dumps(silence.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def decode_silence(value: bytes) -> Silence:
    """Parse a topic value; raises SilenceError for anything that is not a valid silence."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SilenceError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SilenceError("a silence record must be a JSON object")
    try:
        silence = Silence(id=data["id"], match=dict(data.get("match") or {}), rule=data.get("rule"),
                          until_ms=data["until_ms"], reason=data.get("reason", ""),
                          created_ms=data.get("created_ms", 0))
    except KeyError as exc:
        raise SilenceError(f"silence record lacks {exc.args[0]!r}") from None
    except TypeError as exc:
        raise SilenceError(f"bad silence record: {exc}") from None
    checks = ((isinstance(silence.id, str) and silence.id, "id must be a non-empty string"),
              (type(silence.until_ms) is int, "until_ms must be an integer (ms since the epoch)"),
              (silence.rule is None or isinstance(silence.rule, str), "rule must be a string or null"))
    for ok, problem in checks:
        if not ok:
            raise SilenceError(problem)
    return silence


class SilenceSet:
    """The current silences by id. Written by one reader (the topic tailer), read by agents on other
    threads: every change swaps in a new dict, so readers always see a consistent snapshot."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}
        self._write = threading.Lock()
        #: set once the reader has caught up with the topic (all silences existing at start are known)
        self.ready = threading.Event()

    def apply(self, key: bytes | str | None, value: bytes | None) -> None:
        """Apply one topic record: a silence (added or replaced) or a tombstone (removed).
        Invalid records are logged and ignored: one bad write must not stop the others."""
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        if value is None:
            if name is not None:
                self._swap(lambda d: d.pop(name, None))
            return
        try:
            silence = decode_silence(value)
        except SilenceError as exc:
            log.warning("ignoring invalid record %r on the silences topic: %s", name, exc)
            return
        self._swap(lambda d: d.__setitem__(silence.id, silence))

    def add(self, silence: Silence) -> None:
        """Add or replace a silence (tests and tools without a topic)."""
        self._swap(lambda d: d.__setitem__(silence.id, silence))

    def _swap(self, change: Callable[[dict[str, Silence]], Any]) -> None:
        with self._write:
            updated = dict(self._by_id)
            change(updated)
            self._by_id = updated

    def covering(self, facts: ActionFacts, now_ms: int) -> Silence | None:
        """The first (by id) active silence that covers the action, or None."""
        silences = self._by_id
        if not silences:
            return None
        for silence_id in sorted(silences):
            if silences[silence_id].covers(facts, now_ms):
                return silences[silence_id]
        return None

    def all(self) -> list[Silence]:
        """Every known silence (expired ones included until removed), by id."""
        silences = self._by_id
        return [silences[k] for k in sorted(silences)]

    def active(self, now_ms: int) -> list[Silence]:
        """Silences in force at `now_ms`, by id."""
        return [s for s in self.all() if s.active(now_ms)]

    def __len__(self) -> int:
        return len(self._by_id)
