"""Gates: named conditions a deploy (or anything) waits on, declared beside the rules.

    gates:
      - name: deploy-web
        description: web may be deployed
        stable_for: 5m                      # every condition has held this long (unless it says otherwise)
        event: {subject: web, name: deploy-gate}   # the ARCHIVE event each decision is recorded as
        conditions:
          - status: {subject: "web*", name: http, in: [OK]}
          - alerts: {subject: "db*", max: 0}
          - silences: {reason: "*freeze*", max: 0}
          - metric: {subject: lb1, name: http, metric: latency_ms, aggregate: p95, over: 1m, when: {lt: 250}}
          - rule: {name: web-latency-high, firing: false}

A gate is open when every condition holds and is stable. Pure: parsing, the decision and the
decision event; app.orchestration.sources fetches what the conditions read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from app.model.events import Event, Kind
from app.model.ids import deterministic_id
from app.orchestration.conditions import Condition, ConditionResult, RuleLookup, describe_time, parse_conditions
from app.rules.source import ErrorSink, LineDict, line_of

__all__ = ["DECISION_ORIGIN", "GATE_KEYS", "Gate", "GateDecision", "decide", "parse_gate"]

GATE_KEYS: Final = ("name", "description", "stable_for", "event", "conditions")
#: The `origin` of decision events (so they can be told from other ARCHIVE events).
DECISION_ORIGIN: Final = "vigil-gate"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


@dataclass(frozen=True, eq=False)
class Gate:
    """A compiled gate."""

    name: str
    description: str
    file: str
    line: int
    conditions: tuple[Condition, ...]
    stable_for_ms: int | None = None
    event_subject: str = ""
    event_name: str = "gate"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    def stable_for(self, condition: Condition) -> int | None:
        """How long `condition` must have held: its own stable_for, else the gate's."""
        return condition.stable_for_ms if condition.stable_for_ms is not None else self.stable_for_ms


def parse_gate(raw: Any, sink: ErrorSink, line: int, *, rules: RuleLookup | None = None) -> Gate | None:
    """One gate mapping, or None after reporting every problem to `sink`."""
    if not isinstance(raw, LineDict):
        sink.add(line, "each item of `gates:` must be a mapping with name and conditions")
        return None
    before = len(sink.errors)
    sink.unknown_keys(raw, GATE_KEYS, "gate")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        sink.add(line_of(raw, "name"), f"gate name {name!r} must be 1-200 letters, digits or _.:- "
                                       "(starting with a letter or digit)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        sink.add(line_of(raw, "description"), "`description` must be text")
    stable = None
    if "stable_for" in raw:
        stable = sink.duration_ms(raw["stable_for"], line_of(raw, "stable_for"), "stable_for")
    event = raw.get("event", {})
    if not isinstance(event, Mapping) or not all(k in ("subject", "name") and isinstance(v, str) and v
                                                 for k, v in event.items()):
        sink.add(line_of(raw, "event"), "`event` is {subject: TEXT, name: TEXT} (the ARCHIVE event of each decision)")
        event = {}
    if "conditions" not in raw:
        sink.add(raw.line, "gate needs `conditions:`, a list such as [{status: {subject: 'web*', in: [OK]}}]")
    conditions = parse_conditions(raw.get("conditions"), sink, line_of(raw, "conditions"), what="conditions",
                                  rules=rules) if "conditions" in raw else []
    if len(sink.errors) > before or not isinstance(name, str) or not isinstance(description, str):
        return None
    return Gate(name, description, sink.file, raw.line, tuple(conditions), stable,
                event.get("subject", name), event.get("name", "gate"))


@dataclass(frozen=True)
class GateDecision:
    """A gate judged at one time: open or closed, each condition with why."""

    gate: str
    open: bool
    time_ms: int
    results: tuple[ConditionResult, ...]
    description: str = ""
    location: str = ""
    event_subject: str = ""
    event_name: str = "gate"
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def state(self) -> str:
        return "open" if self.open else "closed"

    def to_json(self) -> dict[str, Any]:
        """The answer of GET /api/v1/gates/NAME and `vigil gate check --json`."""
        return {"gate": self.gate, "open": self.open, "state": self.state, "time": self.time_ms,
                "description": self.description, "location": self.location,
                "conditions": [r.to_json() for r in self.results], "problems": list(self.problems)}

    def lines(self) -> list[str]:
        """What `vigil gate check` prints: the verdict, then one line per condition."""
        out = [f"gate {self.gate}: {self.state.upper()} at {describe_time(self.time_ms)}"]
        for r in self.results:
            mark = "ok  " if r.holds and r.stable else ("wait" if r.holds else "FAIL")
            out.append(f"  [{mark}] {r.label}: {r.reason}")
        out.extend(f"  [FAIL] {p}" for p in self.problems)
        return out

    def event(self) -> Event:
        """The ARCHIVE event recording this decision (audit, and a marker on the charts)."""
        failing = [r.label for r in self.results if not (r.holds and r.stable)] + list(self.problems)
        text = "open" if self.open else "closed: " + "; ".join(failing)
        return Event(id=deterministic_id("gate", self.gate, str(self.time_ms), self.state), time=self.time_ms,
                     origin=DECISION_ORIGIN, subject=self.event_subject or self.gate, name=self.event_name,
                     kind=Kind.ARCHIVE, text=text[:1000],
                     tags={"vigil.gate": self.gate, "vigil.gate.decision": self.state},
                     extended={"gate": self.to_json()})


def decide(gate: Gate, results: list[ConditionResult], now_ms: int, *,
           problems: list[str] | None = None) -> GateDecision:
    """The decision from the judged conditions (open: every one holds and is stable, and nothing
    kept a condition from being judged)."""
    is_open = all(r.holds and r.stable for r in results) and not problems
    return GateDecision(gate.name, is_open, now_ms, tuple(results), gate.description, gate.location,
                        gate.event_subject, gate.event_name, tuple(problems or ()))
