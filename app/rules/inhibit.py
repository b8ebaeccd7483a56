"""Dependency-aware inhibition (pure): which firings a failing dependency holds back, when a held
firing is released, and the in-memory view of the statuses those decisions read.

A firing's cause (the event or transition a rule fired on) is a *dependent* of each declaration
(app.rules.dependencies) whose `dependents` it matches and whose `equal` fields it has. Its
*dependencies* are the status rows that declaration's `depends_on` selects with the same `equal`
values, other than rows of its own subject. Then:

- judge_firing: a dependency failing (its state in `failing`) since no later than the firing's
  time + settle holds the firing now; with none failing and a settle > 0, the firing waits until
  its time + settle (in event time: the stage's clock, virtual in a backtest) and is judged again
  (judge_settled) so a dependency's failure that arrives a little later on another partition
  still counts; otherwise it is sent.
- judge_held: a held firing waits while any of its causes still fails. Once all recovered it
  waits `settle` more after the latest recovery (the dependent's own recovery may arrive a little
  after its dependency's), then is released (sent, once, with its original action ids) when its
  cause's identity (subject/name) is still not OK, or dropped when it has recovered too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.rules.dependencies import STATUS_TYPE, Dependency, DependencySet
from app.rules.fields import MISSING, as_text

__all__ = [
    "SEND",
    "Cause",
    "DependencyView",
    "HeldVerdict",
    "Match",
    "Verdict",
    "dependent_matches",
    "failing_causes",
    "identity_key",
    "judge_firing",
    "judge_held",
    "judge_settled",
    "settle_ms_of",
    "status_row",
]

#: What a kept status row holds of a vigil.Status record.
_ROW_FIELDS: Final = ("subject", "name", "state", "since", "tags")


def identity_key(subject: Any, name: Any) -> str:
    """The `status` topic's key of an identity: "subject/name"."""
    return f"{subject}/{name}"


def status_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a vigil.Status record the view keeps (plain JSON values)."""
    row = {k: record.get(k) for k in _ROW_FIELDS}
    state = row.get("state")
    row["state"] = str(getattr(state, "value", state) or "UNKNOWN")
    row["since"] = int(row.get("since") or 0)
    row["tags"] = dict(row.get("tags") or {})
    return row


@dataclass(frozen=True, slots=True)
class Match:
    """A declaration a firing's cause is a dependent of, and the cause's `equal` values."""

    dependency: Dependency
    equal: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cause:
    """A failing dependency that holds a firing back."""

    dependency: str
    identity: str
    state: str
    since_ms: int
    failing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded with held actions (`guard: dependency` tells it from other reasons)."""
        return {"guard": "dependency", "dependency": self.dependency, "identity": self.identity,
                "state": self.state, "since_ms": self.since_ms, "failing": list(self.failing)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cause:
        """Inverse of to_dict."""
        return cls(str(data["dependency"]), str(data["identity"]), str(data["state"]), int(data["since_ms"]),
                   tuple(data.get("failing") or ()))


def dependent_matches(dependencies: DependencySet, event: Mapping[str, Any], event_type: str) -> list[Match]:
    """The declarations `event` (a firing's cause) is a dependent of, with its `equal` values."""
    found: list[Match] = []
    for dependency in dependencies.dependencies:
        if not dependency.dependents(event, event_type):
            continue
        values = [ref.get(event, event_type) for ref in dependency.equal]
        texts = [None if v is MISSING else as_text(v) for v in values]
        if all(t is not None for t in texts):
            found.append(Match(dependency, tuple(t for t in texts if t is not None)))
    return found


class DependencyView:
    """The status rows dependency decisions read: every identity some `depends_on` selects, and
    every identity that is not OK (to tell whether a held firing's dependent still fails). Written
    by one reader thread (the `status` topic), read by the agents: guarded by a lock."""

    def __init__(self, dependencies: DependencySet | None = None) -> None:
        self._lock = threading.Lock()
        self._dependencies = dependencies or DependencySet()
        self._rows: dict[str, dict[str, Any]] = {}
        #: dependency name -> equal values -> identity -> row (rows its depends_on selects)
        self._index: dict[str, dict[tuple[str, ...], dict[str, dict[str, Any]]]] = {}
        #: set once the reader has read the topic to its end
        self.ready = threading.Event()
        self._reindex()

    @property
    def dependencies(self) -> DependencySet:
        """The declarations the view indexes for."""
        return self._dependencies

    def set_dependencies(self, dependencies: DependencySet) -> bool:
        """Index for new declarations; True when their selectors changed (rows the old ones did not
        keep may be needed: the reader should read the topic again)."""
        with self._lock:
            changed = dependencies.selectors_fingerprint != self._dependencies.selectors_fingerprint
            self._dependencies = dependencies
            self._reindex()
        return changed

    def wants(self, row: Mapping[str, Any]) -> bool:
        """Whether a row is kept: not OK, or selected by some `depends_on`."""
        return row.get("state") != "OK" or any(d.depends_on(row, STATUS_TYPE) for d in self._dependencies.dependencies)

    def apply(self, key: str, record: Mapping[str, Any] | None) -> None:
        """One `status` record (None: a tombstone) for identity `key`."""
        row = None if record is None else status_row(record)
        with self._lock:
            old = self._rows.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            if row is not None and self.wants(row):
                self._rows[key] = row
                self._index_row(key, row)

    def replace(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """All rows at once (a fresh read of the topic; the records are vigil.Status-shaped)."""
        kept = {key: status_row(r) for key, r in rows.items()}
        with self._lock:
            self._rows = {key: row for key, row in kept.items() if self.wants(row)}
            self._reindex()

    def row(self, key: str) -> dict[str, Any] | None:
        """The kept row of identity `key` (None: not kept, so OK and not a dependency, or unknown)."""
        return self._rows.get(key)

    def candidates(self, match: Match, dependent_subject: Any) -> list[dict[str, Any]]:
        """The dependencies of a dependent through one declaration (not rows of its own subject)."""
        with self._lock:
            rows = self._index.get(match.dependency.name, {}).get(match.equal, {})
            return [row for row in rows.values() if row["subject"] != dependent_subject]

    def __len__(self) -> int:
        return len(self._rows)

    # -- index (callers hold the lock) ----------------------------------------------------------------
    def _reindex(self) -> None:
        self._index = {d.name: {} for d in self._dependencies.dependencies}
        for key, row in self._rows.items():
            self._index_row(key, row)

    def _keys_of(self, row: Mapping[str, Any]) -> list[tuple[Dependency, tuple[str, ...]]]:
        found = []
        for dependency in self._dependencies.dependencies:
            if dependency.depends_on(row, STATUS_TYPE):
                values = [ref.get(row, STATUS_TYPE) for ref in dependency.equal]
                texts = [None if v is MISSING else as_text(v) for v in values]
                if all(t is not None for t in texts):
                    found.append((dependency, tuple(t for t in texts if t is not None)))
        return found

    def _index_row(self, key: str, row: dict[str, Any]) -> None:
        for dependency, values in self._keys_of(row):
            self._index.setdefault(dependency.name, {}).setdefault(values, {})[key] = row

    def _unindex(self, key: str, row: dict[str, Any]) -> None:
        for dependency, values in self._keys_of(row):
            by_value = self._index.get(dependency.name, {})
            rows = by_value.get(values)
            if rows is not None:
                rows.pop(key, None)
                if not rows:
                    del by_value[values]


def failing_causes(matches: list[Match], view: DependencyView, dependent_subject: Any, until_ms: int) -> list[Cause]:
    """Dependencies of the matches failing since no later than `until_ms`, by identity."""
    causes: dict[tuple[str, str], Cause] = {}
    for match in matches:
        failing = match.dependency.failing
        for row in view.candidates(match, dependent_subject):
            if row["state"] in failing and row["since"] <= until_ms:
                key = identity_key(row["subject"], row["name"])
                causes.setdefault((match.dependency.name, key),
                                  Cause(match.dependency.name, key, row["state"], row["since"], tuple(sorted(failing))))
    return [causes[k] for k in sorted(causes)]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a firing now: `send` it, `hold` it (causes), or `settle` (judge again at `at_ms`)."""

    kind: str
    causes: tuple[Cause, ...] = ()
    at_ms: int | None = None


SEND: Final = Verdict("send")


def settle_ms_of(matches: list[Match]) -> int:
    """The longest settle of the declarations a firing's cause is a dependent of."""
    return max((m.dependency.settle_ms for m in matches), default=0)


def judge_firing(matches: list[Match], view: DependencyView, dependent_subject: Any, time_ms: int) -> Verdict:
    """A new firing at event time `time_ms` whose cause has these matches (see the module docstring)."""
    if not matches:
        return SEND
    settle_ms = settle_ms_of(matches)
    causes = failing_causes(matches, view, dependent_subject, time_ms + settle_ms)
    if causes:
        return Verdict("hold", tuple(causes))
    if settle_ms > 0:
        return Verdict("settle", at_ms=time_ms + settle_ms)
    return SEND


def judge_settled(matches: list[Match], view: DependencyView, dependent_subject: Any, time_ms: int) -> Verdict:
    """A firing whose settle has passed: held if a dependency failed by then, else sent."""
    causes = failing_causes(matches, view, dependent_subject, time_ms + settle_ms_of(matches))
    return Verdict("hold", tuple(causes)) if causes else SEND


@dataclass(frozen=True, slots=True)
class HeldVerdict:
    """What to do with a held firing: `wait` (look again at `at_ms`, None: after the recheck
    interval), `release` it, or `drop` it (its dependent recovered too)."""

    kind: str
    at_ms: int | None = None


def judge_held(causes: list[Cause], view: DependencyView, dependent_key: str, now_ms: int,
               settle_ms: int) -> HeldVerdict:
    """A held firing at `now_ms` (see the module docstring)."""
    recovered_ms = 0
    for cause in causes:
        row = view.row(cause.identity)
        if row is not None and row["state"] in cause.failing:
            return HeldVerdict("wait")
        # A row gone from the view (OK and no longer selected, or deleted) counts from its failure.
        recovered_ms = max(recovered_ms, row["since"] if row is not None else cause.since_ms)
    if now_ms < recovered_ms + settle_ms:
        return HeldVerdict("wait", recovered_ms + settle_ms)
    dependent = view.row(dependent_key)
    return HeldVerdict("release" if dependent is not None and dependent["state"] != "OK" else "drop")
