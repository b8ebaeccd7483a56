"""Gates judged on fetched data (statuses, silences): open/closed with each condition's reason,
stable_for from the data's own `since`, the decision event, and definition errors as file:line."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from app.model.events import Kind
from app.orchestration.definitions import DefinitionsLoader, check_definitions
from app.orchestration.gates import DECISION_ORIGIN
from app.orchestration.sources import judge_gate
from tests.unit.orchestration.conftest import FakeSource

NOW = 1_800_000_000_000
M = 60_000

GATES = """
gates:
  - name: deploy-web
    stable_for: 5m
    event: {subject: web, name: deploy-gate}
    conditions:
      - status: {subject: "web*", name: http, in: [OK]}
      - alerts: {subject: "db*", states: [CRITICAL], max: 0}
      - silences: {reason: "*freeze*", max: 0}
"""


def _gate(tmp_path: Path, text: str = GATES):
    (tmp_path / "gates.yaml").write_text(textwrap.dedent(text))
    definitions = DefinitionsLoader(tmp_path).current()
    assert list(definitions.errors) == []
    return definitions.gates["deploy-web"]


def _judge(gate, source: FakeSource):
    return asyncio.run(judge_gate(gate, source, NOW))


def test_gate__open_when_every_condition_holds_and_is_stable(tmp_path: Path) -> None:
    source = FakeSource()
    for host in ("web1", "web2"):
        source.set(host, "http", "OK", since=NOW - 10 * M)
    source.set("db1", "disk", "WARNING", since=NOW - 20 * M)
    decision = _judge(_gate(tmp_path), source)
    assert decision.open and decision.state == "open"
    assert [r.holds and r.stable for r in decision.results] == [True, True, True]
    event = decision.event()
    assert (event.subject, event.name, event.kind, event.origin) == ("web", "deploy-gate", Kind.ARCHIVE,
                                                                     DECISION_ORIGIN)
    assert event.tags["vigil.gate.decision"] == "open"


def test_gate__closed_names_the_identity_at_fault(tmp_path: Path) -> None:
    source = FakeSource()
    source.set("web1", "http", "OK", since=NOW - 10 * M)
    source.set("web2", "http", "CRITICAL", since=NOW - M)
    decision = _judge(_gate(tmp_path), source)
    assert not decision.open
    status = decision.results[0]
    assert not status.holds and "web2/http is CRITICAL" in status.reason
    assert "closed" in decision.event().text


def test_gate__not_yet_stable_is_closed_and_says_for_how_long(tmp_path: Path) -> None:
    source = FakeSource()
    source.set("web1", "http", "OK", since=NOW - 2 * M)  # recovered two minutes ago; 5m needed
    decision = _judge(_gate(tmp_path), source)
    status = decision.results[0]
    assert status.holds and not status.stable and not decision.open
    assert "120s of the 300s" in status.reason
    assert any("[wait]" in line for line in decision.lines())


def test_gate__no_matching_identity_is_closed(tmp_path: Path) -> None:
    decision = _judge(_gate(tmp_path), FakeSource())
    assert not decision.open and "0 identities match" in decision.results[0].reason


def test_gate_definitions__errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "gates.yaml").write_text(textwrap.dedent("""
        gates:
          - name: deploy-web
            stable_for: soon
            conditions:
              - status: {subject: "web*", in: [FINE]}
              - bogus: {x: 1}
          - name: no-conditions
    """))
    errors = check_definitions(tmp_path)
    lines = sorted(e.line for e in errors)
    assert lines == [4, 6, 7, 8], [str(e) for e in errors]
    assert all(str(e).startswith(f"{tmp_path / 'gates.yaml'}:") or str(e).startswith("gates.yaml:")
               for e in errors)
