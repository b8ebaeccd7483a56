"""Factories for rules tests: events, alerts, rule sets from inline YAML, engines with dict state."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.model.ids import deterministic_id
from app.rules.engine import Firing, RuleEngine
from app.rules.loader import RuleSet
from app.rules.offline import EventTimeTimers, OfflineResult, simulate
from app.rules.source import ErrorSink
from app.rules.spec import compile_rules_text

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "rules"


def event(subject: str = "web1", name: str = "load", time: int = 0, **fields: Any) -> dict[str, Any]:
    """A vigil.Event-shaped dict with a deterministic id (from subject, name, time)."""
    record: dict[str, Any] = {
        "id": deterministic_id("test", subject, name, str(time)), "time": time, "subject": subject,
        "name": name, "kind": "STATUS", "severity": 0, "origin": "", "text": "", "tags": {},
        "metrics": {}, "ttl": None, "extended": None, "trace_id": None,
    }
    record.update(fields)
    return record


def alert(subject: str = "web1", name: str = "disk", time: int = 0, from_state: str = "OK",
          to_state: str = "CRITICAL", **fields: Any) -> dict[str, Any]:
    """A vigil.Alert-shaped transition dict."""
    record: dict[str, Any] = {
        "id": deterministic_id("alert", subject, name, str(time)), "time": time, "subject": subject,
        "name": name, "from_state": from_state, "to_state": to_state, "severity": 2,
        "cause_event_id": None, "text": "", "flapping": False, "tags": {}, "trace_id": None,
    }
    record.update(fields)
    return record


def ruleset_from(yaml_text: str, file: str = "test.yaml") -> RuleSet:
    """Compile inline YAML (dedented); fails the test with the errors if there are any."""
    rules, errors = compile_rules_text(textwrap.dedent(yaml_text), file)
    if errors:
        pytest.fail("rule errors:\n" + "\n".join(map(str, errors)))
    return RuleSet(tuple(rules))


def errors_of(yaml_text: str, file: str = "test.yaml") -> list[str]:
    """The `file:line: message` errors of inline YAML."""
    return [str(e) for e in compile_rules_text(textwrap.dedent(yaml_text), file)[1]]


def one_rule(body: str) -> str:
    """A rules file with one rule named `r`, `body` being its keys (dedented YAML)."""
    return "rules:\n  - name: r\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + \
        ("\n    actions: [{print: {}}]\n" if "actions" not in body else "\n")


@dataclass
class Harness:
    """An engine over dict state and event-time timers, with helpers that drive time forward."""

    ruleset: RuleSet
    store: dict[str, Any] = field(default_factory=dict)
    timers: EventTimeTimers = field(default_factory=EventTimeTimers)

    def __post_init__(self) -> None:
        self.engine = RuleEngine(self.ruleset, self.store, self.timers)  # type: ignore[arg-type]

    def advance(self, now_ms: int) -> list[Firing]:
        out: list[Firing] = []
        while (due := self.timers.pop_due(now_ms)) is not None:
            key, at_ms, payload = due
            out.extend(self.engine.on_timer(key, at_ms, payload))
        return out

    def feed(self, records: Iterable[Mapping[str, Any]], event_type: str = "vigil.Event") -> list[Firing]:
        out: list[Firing] = []
        for record in records:
            out.extend(self.advance(record["time"]))
            if "to_state" in record:
                out.extend(self.engine.on_transition(record))
            else:
                out.extend(self.engine.on_event(record, event_type))
        return out


@pytest.fixture
def harness() -> Callable[[str], Harness]:
    """harness(yaml) -> Harness for the rules in that YAML."""
    return lambda yaml_text: Harness(ruleset_from(yaml_text))


@pytest.fixture
def run() -> Callable[..., OfflineResult]:
    """run(yaml, records, until_ms=None) -> OfflineResult of the offline simulator."""
    def _run(yaml_text: str, records: Iterable[Mapping[str, Any]], until_ms: int | None = None) -> OfflineResult:
        return simulate(ruleset_from(yaml_text), records, until_ms=until_ms)

    return _run


@pytest.fixture
def sink() -> ErrorSink:
    return ErrorSink("t.yaml")
