"""The rules stage with dependencies (no Kafka): held firings recorded with their reason, the settle,
release exactly once with the original action ids, drop when the dependent recovered too, state
kept across a restart, and the counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.rules.inhibit import DependencyView
from app.rules.stage import SUPPRESSED_TOPIC

from .conftest import event
from .stage_helpers import StageRun, write_rules

T0 = 1_800_000_000_000

RULES = """\
rules:
  - name: host-down
    match: {name: ping, severity: {ge: 2}}
    group_by: [subject]
    actions:
      - print: {text: "{{ event.subject }} down"}
"""

DEPENDENCIES = """\
dependencies:
  - name: rack-switch
    dependents: {tags.rack: "*", tags.role: host}
    depends_on: {tags.role: switch, name: ping}
    equal: [tags.rack]
    settle: 2s
"""


def status(subject: str, state: str, since: int, **tags: str) -> dict[str, Any]:
    return {"subject": subject, "name": "ping", "state": state, "since": since, "last_seen": since, "tags": tags}


def down(subject: str, rack: str, at: int) -> dict[str, Any]:
    return event(subject, "ping", at, severity=2, tags={"rack": rack, "role": "host"})


def run_of(tmp_path: Path) -> StageRun:
    write_rules(tmp_path, RULES)
    write_rules(tmp_path / "dependencies", DEPENDENCIES, "rack.yaml")
    return StageRun(tmp_path, wall_clock_ms=T0, dependency_view=DependencyView(), dependency_recheck_ms=1_000)


def set_status(run: StageRun, row: dict[str, Any]) -> None:
    run.dependency_view.apply(f"{row['subject']}/{row['name']}", row)


def counter(run: StageRun, name: str) -> float:
    value = run.stage.metrics.snapshot().get(name, 0.0)
    return float(value["total"] if isinstance(value, dict) else value)


def test_switch_down__host_firing_held_with_reason__released_once_on_recovery(tmp_path: Path) -> None:
    run = run_of(tmp_path)
    run.stage.current(T0)  # loads the declarations (the view indexes for them)
    set_status(run, status("sw1", "CRITICAL", T0 - 500, rack="r1", role="switch"))
    set_status(run, status("h1", "CRITICAL", T0, rack="r1", role="host"))
    set_status(run, status("h2", "CRITICAL", T0, rack="r1", role="host"))
    run.feed([down("h1", "r1", T0), down("h2", "r1", T0), down("h9", "r2", T0)])

    held = run.outputs(SUPPRESSED_TOPIC)
    assert sorted(o.value["action"]["target"] for o in held) == ["h1", "h2"]
    reason = held[0].value["dependency"]
    assert (reason["guard"], reason["dependency"], reason["identity"], reason["state"], reason["since_ms"]) == \
        ("dependency", "rack-switch", "sw1/ping", "CRITICAL", T0 - 500)
    assert "sw1/ping is CRITICAL since" in reason["detail"]
    assert counter(run, "vigil_rules_dependency_inhibited") == 2
    assert run.actions() == []  # h9 (another rack) waits its settle: its switch's state may be on its way

    run.advance(2_000)
    assert [a.target for a in run.actions()] == ["h9"]

    # the switch recovers; h2 recovered with it, h1 is still down
    run.advance(3_000)
    set_status(run, status("sw1", "OK", T0 + 5_000, rack="r1", role="switch"))
    set_status(run, status("h2", "OK", T0 + 5_100, rack="r1", role="host"))
    run.advance(1_000)
    assert [a.target for a in run.actions()] == ["h9"]  # settling after the recovery
    run.restart()  # held state survives a restart (state table + timers)
    run.advance(2_000)
    held_h1 = next(o.value["action"]["id"] for o in held if o.value["action"]["target"] == "h1")
    assert [a.id for a in run.actions() if a.target == "h1"] == [held_h1]  # the original id: executors run it once
    assert counter(run, "vigil_rules_dependency_released") == 1
    assert counter(run, "vigil_rules_dependency_dropped") == 1
    run.advance(60_000)
    assert [a.target for a in run.actions()] == ["h9", "h1"]  # exactly once
    assert run.stage.held() == []


def test_settle__switch_failure_arriving_after_the_hosts_still_holds_them(tmp_path: Path) -> None:
    run = run_of(tmp_path)
    run.stage.current(T0)
    set_status(run, status("sw1", "OK", 0, rack="r1", role="switch"))
    run.feed([down("h1", "r1", T0)])
    assert run.outputs(SUPPRESSED_TOPIC) == [] and run.actions() == []
    assert [h["phase"] for h in run.stage.held()] == ["settle"]
    set_status(run, status("sw1", "CRITICAL", T0 + 300, rack="r1", role="switch"))  # from another partition
    run.advance(2_000)
    assert run.actions() == [] and len(run.outputs(SUPPRESSED_TOPIC)) == 1
    assert [h["phase"] for h in run.stage.held()] == ["held"]


def test_no_dependencies__nothing_waits(tmp_path: Path) -> None:
    write_rules(tmp_path, RULES)
    run = StageRun(tmp_path, wall_clock_ms=T0)
    run.feed([down("h1", "r1", T0)])
    assert [a.target for a in run.actions()] == ["h1"]


def test_describe_shows_declarations_and_held_firings(tmp_path: Path) -> None:
    run = run_of(tmp_path)
    run.stage.current(T0)
    set_status(run, status("sw1", "CRITICAL", T0, rack="r1", role="switch"))
    run.feed([down("h1", "r1", T0)])
    described = run.stage.describe(T0)["dependencies"]
    assert [d["name"] for d in described["declared"]] == ["rack-switch"]
    assert described["declared"][0]["equal"] == ["tags.rack"]
    (held,) = described["held"]
    assert held["dependent"] == "h1/ping" and held["causes"][0]["identity"] == "sw1/ping"
