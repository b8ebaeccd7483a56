"""Comparing two rule sets evaluates the rules they have in common once (app.backtest.sharing): which
rules are shared, and that the report is byte-identical to evaluating each set whole, whatever the
partitions, slices and processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.backtest.report import report_lines
from app.backtest.run import build_replayer
from app.backtest.sharing import plan_shares
from app.pipeline.config import PipelineConfig
from tests.unit.rules.conftest import ruleset_from

from .conftest import event, replay, rules_dir

RULES_A = """
rules:
  - name: went-silent
    status: {to: EXPIRED}
    actions: [{print: {text: "{{ event.subject }} silent"}}]
  - name: disk-critical
    match: {name: disk}
    status: {to: CRITICAL}
    actions: [{print: {}}, {fire_event: {subject: "{{ event.subject }}", name: page}}]
  - name: hb-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 3s
    actions: [{print: {}}]
  - name: errors
    match: {name: log}
    group_by: []
    count: {at_least: 3, within: 10s}
    throttle: {once_within: 15s}
    actions: [{print: {target: fleet}}]
  - name: errors-per-host
    match: {name: log}
    count: {at_least: 2, within: 20s}
    actions: [{print: {}}]
  - name: load-high
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 5s}
    when: {gt: 5}
    throttle: {once_within: 4s}
    actions: [{print: {text: "{{ value }}"}}]
  - name: load-held
    match: {name: load}
    register: {metric: load1, aggregate: max, period: 3s}
    when: {gt: 7}
    for: 2s
    actions: [{print: {}}]
  - name: deploy-restart
    match: {name: {in: [deploy, restart]}}
    sequence: [{match: {name: deploy}}, {match: {name: restart}}]
    within: 5s
    actions: [{print: {}}]
  - name: any-log
    match: {name: log}
    throttle: {once_within: 2s}
    actions: [{print: {}}]
  - name: ticks
    every: 10s
    actions: [{print: {}}]
  - name: no-target
    match: {name: disk}
    actions: [{print: {target: "{{ event.tags.missing }}"}}, {print: {}}]
"""

#: B: thresholds, windows and throttles changed on some rules, one rule gone, one added, one moved
#: (same definition at another line: still shared), one only disabled.
RULES_B = (RULES_A.replace("absent_for: 3s", "absent_for: 2s").replace("when: {gt: 5}", "when: {gt: 4}")
           .replace("at_least: 2, within: 20s", "at_least: 3, within: 30s")
           .replace("""  - name: any-log
    match: {name: log}
    throttle: {once_within: 2s}
    actions: [{print: {}}]
""", "") + """  - name: any-log
    match: {name: log}
    throttle: {once_within: 2s}
    actions: [{print: {}}]
  - name: load-any
    match: {name: load}
    actions: [{print: {}}]
""").replace("""  - name: load-held
    match: {name: load}""", """  - name: load-held
    enabled: false
    match: {name: load}""")


def _events() -> list[dict[str, Any]]:
    events = []
    for i in range(240):
        at = i * 0.37
        events.append(event(f"h{i % 7}", "heartbeat", at, ttl=1.0))
        if i % 11 == 0:
            events.append(event(f"db{i % 3}", "disk", at + 0.1, severity=2 if i % 22 else 0))
        if i % 4 == 0:
            events.append(event(f"web{i % 3}", "log", at + 0.2))
        if i % 3 == 0:
            events.append(event(f"web{i % 2}", "load", at + 0.05, metrics={"load1": float(i % 11)}))
        if i % 17 == 0:
            events.append(event(f"app{i // 17 % 2}", "deploy", at + 0.3))
        if i % 17 == 3:
            events.append(event(f"app{i // 17 % 2}", "restart", at + 0.3))
        if i % 50 == 7:  # produced by an action of any-log: the storm guard holds its actions back
            events.append(event("web1", "log", at + 0.25, tags={"vigil.chain.rules": "any-log",
                                                                "vigil.chain.depth": "1"}))
    return events


@pytest.fixture
def compared(tmp_path: Path) -> list[Path]:
    return [rules_dir(tmp_path, RULES_A, "a"), rules_dir(tmp_path, RULES_B, "b")]


def test_plan__shares_rules_identical_in_both_sets_except_schedules(compared: list[Path]) -> None:
    from app.rules.loader import load_rules

    shares = plan_shares([load_rules(d)[0] for d in compared])
    assert [([r.name for r in s.ruleset], s.serves) for s in shares] == [
        (["went-silent", "disk-critical", "errors", "deploy-restart", "any-log", "no-target"], (0, 1)),
        (["hb-missing", "errors-per-host", "load-high", "load-held", "ticks"], (0,)),
        (["hb-missing", "errors-per-host", "load-high", "ticks", "load-any"], (1,))]
    # the shared cause log looks back as far as the longest of either set (errors-per-host: 20 s / 30 s)
    assert shares[0].cause_window_ms == 30_000 and shares[1].cause_window_ms == 20_000
    # route errors are counted once per rule set: by the share serving both
    assert [s.counts_route_errors for s in shares] == [2, 0, 0]


def test_plan__the_definition_decides_not_the_text() -> None:
    a = ruleset_from("""
        rules:
          - name: r
            match: {name: load, tags.class: web}
            actions: [{print: {text: "x"}}]
        """)
    moved = ruleset_from("""
        rules:
          - name: other
            match: {name: disk}
            actions: [{print: {}}]

          - {name: r, match: {tags.class: web, name: load}, actions: [{print: {text: x}}]}
        """, "elsewhere.yaml")
    reworded = ruleset_from("""
        rules:
          - name: r
            description: changed
            match: {name: load, tags.class: web}
            actions: [{print: {text: "x"}}]
        """)
    assert [(len(s.ruleset), s.serves) for s in plan_shares([a, moved])] == [(1, (0, 1)), (1, (1,))]
    # any key counts, prose too: templates may show it (rule.description)
    assert [s.serves for s in plan_shares([a, reworded])] == [(0,), (1,)]
    # one rule set, or three: each whole
    assert [s.serves for s in plan_shares([a])] == [(0,)]
    assert [s.serves for s in plan_shares([a, a, a])] == [(0,), (1,), (2,)]


def test_shared__report_byte_identical_to_each_set_whole(compared: list[Path]) -> None:
    whole = replay(compared, _events(), until_s=120, share=False)
    shared = replay(compared, _events(), until_s=120)
    rules = {a.rule for a in whole}
    assert {"went-silent", "disk-critical", "errors", "deploy-restart", "any-log", "hb-missing", "errors-per-host",
            "load-high", "load-held", "load-any", "ticks", "no-target"} <= rules
    assert any(len(a.causes) > 1 for a in whole if a.rule == "errors")  # causes from the shared log
    assert list(report_lines(shared, compare=True)) == list(report_lines(whole, compare=True))
    assert shared == whole
    for side in (0, 1):
        alone = replay([compared[side]], _events(), until_s=120)
        assert [a.to_json() for a in shared if a.ruleset == side] == [a.to_json() for a in alone]


@pytest.mark.parametrize(("partitions", "slice_ms", "workers"), [(1, 10_000, 1), (3, 1_000, 1), (3, 60_000, 1),
                                                                  (4, 10_000, 2), (6, 3_000, 3)])
def test_shared__independent_of_partitions_slices_and_processes(compared: list[Path], partitions: int,
                                                                slice_ms: int, workers: int) -> None:
    reference = replay(compared, _events(), until_s=120, partitions=3, share=False)
    again = replay(compared, _events(), until_s=120, partitions=partitions, slice_ms=slice_ms, workers=workers)
    assert list(report_lines(again, compare=True)) == list(report_lines(reference, compare=True))


def test_shared__counts_as_each_set_whole(compared: list[Path]) -> None:
    from app.backtest.run import SliceDriver
    from app.backtest.source import MemorySource
    from app.backtest.times import TimeRange

    from .conftest import T0, S, partitioned

    counts = []
    for share in (False, True):
        records = partitioned(_events(), 3)
        replayer = build_replayer(PipelineConfig.model_validate({}), compared, partitions=list(records), share=share)
        assert len(replayer.rulesets) == (3 if share else 2)
        SliceDriver(replayer, MemorySource(records), time_range=TimeRange(T0, T0 + 120 * S)).run()
        counts.append(replayer.counts)
    # render failures and storm-suppressed actions of shared rules are counted for each set
    assert counts[0].render_failures == {0: 22, 1: 22} and counts[0].suppressed == {0: 3, 1: 3}
    assert counts[0] == counts[1]
