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


def test_gate__judged_from_the_status_index_tally_as_from_rows(tmp_path: Path) -> None:
    """The UI's path (IndexSource: counts kept by the status index) decides what the rows decide,
    also after the statuses change between checks."""
    from app.rules.silences import SilenceSet
    from app.web.gates import IndexSource
    from app.web.statusindex import StatusIndex

    gate = _gate(tmp_path)
    rows = FakeSource()
    index = StatusIndex()

    class Hub:
        ready = True
        silences = SilenceSet()

    hub = Hub()
    hub.index = index  # type: ignore[attr-defined]
    indexed = IndexSource(hub, None)  # type: ignore[arg-type]  # no metric conditions: no workers asked

    def set_status(subject: str, name: str, state: str, since: int) -> None:
        rows.set(subject, name, state, since)
        index.apply(subject, name, {"subject": subject, "name": name, "state": state, "since": since, "tags": {}},
                    index.revision + 1)

    def both() -> list[tuple[bool, bool, str]]:
        found = [[(r.holds, r.stable, r.reason) for r in _judge(gate, source).results] for source in (rows, indexed)]
        assert found[0] == found[1]
        return found[0]

    set_status("web1", "http", "OK", NOW - 10 * M)
    set_status("web2", "http", "OK", NOW - 20 * M)
    set_status("db1", "disk", "OK", NOW - 30 * M)
    assert [holds for holds, _, _ in both()] == [True, True, True]
    set_status("web2", "http", "CRITICAL", NOW - M)
    set_status("db1", "disk", "CRITICAL", NOW - 2 * M)
    assert [holds for holds, _, _ in both()] == [False, False, True]
    set_status("web2", "http", "OK", NOW - M)  # recovered a minute ago: holds, not stable for 5m
    set_status("db1", "disk", "WARNING", NOW - M)
    assert [(holds, stable) for holds, stable, _ in both()][:2] == [(True, False), (True, False)]
