"""Rules reading the hierarchy: templates, thresholds in match/when, misses, the stage, the CLIs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.lookups.cli import lookup_command
from app.rules.cli import rules_group
from app.rules.loader import RuleSetLoader, load_rules
from app.rules.offline import simulate
from app.rules.stage import ACTIONS_DLQ_TOPIC

from ..rules.conftest import event
from ..rules.stage_helpers import StageRun, write_rules
from .conftest import write

S = 1000


def load(role: str, subject: str, value: float, time: int = 0, **tags: str) -> dict:
    return event(subject, "load", time, tags={"role": role, **tags}, metrics={"load": value})


def _actions(rules_dir: Path, rules: str, events: list[dict]) -> tuple[list, list]:
    write_rules(rules_dir, rules)
    ruleset, errors = load_rules(rules_dir)
    assert errors == []
    result = simulate(ruleset, events)
    return [(a.target, a.params) for a in result.actions], [str(f) for f in result.failures]


THRESHOLD_IN_MATCH = """
    rules:
      - name: load-high
        match:
          name: load
          metrics.load: {gt: "{{ lookup('thresholds.load') }}"}
        actions:
          - print: {text: "{{ event.subject }} above {{ lookup('thresholds.load') }}"}
"""


def test_threshold_in_match__per_role_and_per_host(rules_dir: Path) -> None:
    actions, failures = _actions(rules_dir, THRESHOLD_IN_MATCH, [
        load("db", "db1", 5),     # db bound 4: fires
        load("web", "web2", 9),   # common bound 10: does not
        load("web", "web1", 15),  # host/web1 bound 20: does not
        load("web", "web3", 11),  # common bound 10: fires
    ])
    assert actions == [("db1", {"text": "db1 above 4"}), ("web3", {"text": "web3 above 10"})]
    assert failures == []


def test_threshold_in_when__register_with_per_role_bound(rules_dir: Path) -> None:
    actions, _ = _actions(rules_dir, """
        rules:
          - name: load-avg
            match: {name: load}
            register: {metric: load, aggregate: avg, period: 1m}
            when: {gt: "{{ lookup('thresholds.load') }}"}
            actions: [{print: {value: "{{ value }}"}}]
    """, [load("db", "db1", 5), load("web", "web2", 5)])
    assert actions == [("db1", {"value": "5.0"})]


def test_lookup_in_templates__explicit_event_default_and_merges(rules_dir: Path) -> None:
    actions, failures = _actions(rules_dir, """
        rules:
          - name: r
            match: {name: load}
            actions:
              - print:
                  explicit: "{{ lookup('thresholds.disk', event) }}"
                  default: "{{ lookup('no.such', default=5) }}"
                  unique: "{{ lookup('admins', merge='unique') | join(',') }}"
                  deep: "{{ lookup('thresholds', merge='deep') | dictsort }}"
    """, [load("db", "db1", 1, dc="fra")])
    assert failures == []
    assert actions == [("db1", {"explicit": "80", "default": "5",
                                "unique": "dba@example.org,ops@example.org,fra-oncall@example.org",
                                "deep": "[('disk', 80), ('load', 4)]"})]


def test_missing_key_without_default__the_action_fails_naming_the_key(rules_dir: Path) -> None:
    actions, failures = _actions(rules_dir, """
        rules:
          - name: r
            match: {name: load}
            actions:
              - print: {text: "{{ lookup('escalation.team') }}"}
              - print: {}
    """, [load("db", "db1", 1)])
    assert actions == [("db1", {})]
    assert failures == ["rule r: action 1 (print) dropped: params.text: LookupMissingError: lookup: no value for key "
                        "`escalation.team` at host/db1, role/db, common, and no default="]


def test_missing_key_without_default__lands_in_actions_dlq_from_the_stage(rules_dir: Path) -> None:
    write_rules(rules_dir, "rules: [{name: r, match: {name: load}, actions: [{print: {t: \"{{ lookup('nope') }}\"}}]}]")
    run = StageRun(rules_dir)
    run.feed([load("db", "db1", 1)])
    (dead,) = run.outputs(ACTIONS_DLQ_TOPIC)
    assert "`nope`" in dead.value["reason"] and "`nope`" in dead.headers["vigil.error"]
    assert run.actions() == []


@pytest.mark.parametrize("condition", [
    "metrics.load: {gt: \"{{ lookup('no.such') }}\"}",
    "not: {metrics.load: {gt: \"{{ lookup('no.such') }}\"}}",  # not even under `not`
    "metrics.load: {not: {le: \"{{ lookup('no.such') }}\"}}",
])
def test_threshold_lookup_that_finds_nothing__condition_does_not_hold__counted_logged_once(
        rules_dir: Path, condition: str, caplog: pytest.LogCaptureFixture) -> None:
    write_rules(rules_dir, f"""
        rules:
          - name: r
            match:
              name: load
              {condition}
            actions: [{{print: {{}}}}]
    """)
    run = StageRun(rules_dir)
    with caplog.at_level(logging.WARNING, logger="app.lookups.loader"):
        run.feed([load("db", "db1", 50), load("db", "db2", 50, time=S)])
    assert run.actions() == []
    assert run.stage.metrics.lookup_misses.labels("no.such")._value.get() == 2
    (logged,) = caplog.records  # once per key, not per event
    assert "`no.such`" in logged.message


def test_threshold_default__used_when_no_level_has_the_key(rules_dir: Path) -> None:
    actions, _ = _actions(rules_dir, """
        rules:
          - name: r
            match: {name: load, metrics.load: {gt: "{{ lookup('no.such', default=3) }}"}}
            actions: [{print: {}}]
    """, [load("db", "db1", 5), load("db", "db2", 2)])
    assert [a[0] for a in actions] == ["db1"]


def test_rendered_operand_and_list_operands(rules_dir: Path) -> None:
    write(rules_dir, "data/common.yaml", "quiet_hosts: [web9]\nfactor: 2\nthresholds: {load: 10}\n")
    actions, _ = _actions(rules_dir, """
        rules:
          - name: r
            match:
              name: load
              subject: {not_in: "{{ lookup('quiet_hosts') }}"}
              metrics.load: {gt: "{{ lookup('thresholds.load') * lookup('factor') }}"}
            actions: [{print: {}}]
    """, [load("db", "db1", 25), load("web", "web9", 25), load("web", "web2", 15)])
    assert [a[0] for a in actions] == ["db1"]  # db1: 25 > 4*2; web9 is quiet; web2: 15 < 10*2


def test_hot_reload_of_data__new_bound_applies_without_a_rule_change(rules_dir: Path) -> None:
    write_rules(rules_dir, THRESHOLD_IN_MATCH)
    run = StageRun(rules_dir)
    run.feed([load("db", "db1", 5)])
    assert len(run.actions()) == 1
    path = write(rules_dir, "data/role/db.yaml", "thresholds: {load: 8}\n")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    run.advance(2 * S)  # the reload check
    run.feed([load("db", "db1", 5, time=3 * S)])
    assert len(run.actions()) == 1  # 5 is below the new bound 8
    run.feed([load("db", "db1", 9, time=4 * S)])
    assert len(run.actions()) == 2


def test_invalid_operand__rules_check_error_with_line(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: r
            match: {name: load, metrics.load: {gt: "{{ lookup('k', merge='mix') }}"}}
            actions: [{print: {}}]
    """)
    errors = [str(e) for e in RuleSetLoader(rules_dir).reload().errors]
    assert errors == [f"{rules_dir / 'rules.yaml'}:4: metrics.load: lookup('k'): unknown merge 'mix'; "
                      "use one of first, unique, hash, deep"]


def test_rules_check__lookup_file_errors_fail_and_unknown_keys_warn(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: r
            match: {name: load, metrics.load: {gt: "{{ lookup('thresholds.load') }}"}}
            actions: [{print: {a: "{{ lookup('nowhere') }}", b: "{{ lookup('gone', default=1) }}"}}]
    """)
    result = CliRunner().invoke(rules_group, ["check", str(rules_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{rules_dir / 'rules.yaml'}:5: warning: lookup key `gone` is defined in no data file (its default is used)",
        f"{rules_dir / 'rules.yaml'}:5: warning: lookup key `nowhere` is defined in no data file (firings fail into "
        "actions-dlq and conditions do not hold)",
        f"{rules_dir}: 1 rule(s) in 1 file(s), no errors",
    ]
    write(rules_dir, "data/role/db.yaml", "thresholds:\n  load: [4\n")
    result = CliRunner().invoke(rules_group, ["check", str(rules_dir)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{rules_dir / 'data/role/db.yaml'}:3: not valid YAML")


def test_vigil_lookup__shows_the_answer_and_the_level_that_answered(rules_dir: Path) -> None:
    result = CliRunner().invoke(lookup_command, ["thresholds.load", "--subject", "db1", "--tag", "role=db",
                                                 "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output
    db_file = rules_dir / "data/role/db.yaml"
    assert result.output.splitlines() == [
        "thresholds.load = 4", "  answered by:", f"    role/db  ({db_file}:2)",
        "  levels, most specific first:", "    host/db1  (no data file)", f"  * role/db  ({db_file})",
        f"    common  ({rules_dir / 'data/common.yaml'})",
        "  (1 level(s) skipped: the event lacks a field they need)"]


def test_vigil_lookup__json_of_a_merge_and_exit_1_when_nothing_answers(rules_dir: Path) -> None:
    result = CliRunner().invoke(lookup_command, ["admins", "--subject", "db1", "--tag", "role=db", "--tag", "dc=fra",
                                                 "--merge", "unique", "--json", "--rules", str(rules_dir)])
    answer = json.loads(result.output)
    assert answer["value"] == ["dba@example.org", "ops@example.org", "fra-oncall@example.org"]
    assert [(s["level"], s["line"]) for s in answer["answered_by"]] == [("role/db", 3), ("dc/fra", 3), ("common", 4)]
    missing = CliRunner().invoke(lookup_command, ["nope", "--subject", "x", "--rules", str(rules_dir)])
    assert missing.exit_code == 1 and missing.output.startswith("nope = (no value)")


def test_backtest_sharing__only_between_directories_with_the_same_lookup_data(rules_dir: Path, tmp_path: Path) -> None:
    from app.backtest.sharing import plan_shares

    same, other = tmp_path / "same", tmp_path / "other"
    for directory in (same, other):
        write(directory, "hierarchy.yaml", "levels: [common]\n")
        write_rules(directory, THRESHOLD_IN_MATCH)
    write_rules(rules_dir, THRESHOLD_IN_MATCH)
    write(same, "data/common.yaml", "thresholds: {load: 10}\n")
    write(other, "data/common.yaml", "thresholds: {load: 3}\n")
    shared = plan_shares([load_rules(d)[0] for d in (same, same)])
    assert [s.serves for s in shared] == [(0, 1)]
    unshared = plan_shares([load_rules(d)[0] for d in (same, other)])
    assert sorted(s.serves for s in unshared) == [(0,), (1,)]


def test_when_lookup_that_finds_nothing__does_not_hold_and_counts(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: r
            match: {name: load}
            register: {metric: load, aggregate: last, period: 1m}
            when: {not: {le: "{{ lookup('no.such') }}"}}
            actions: [{print: {}}]
    """)
    run = StageRun(rules_dir)
    run.feed([load("db", "db1", 50)])
    assert run.actions() == []
    assert run.stage.metrics.lookup_misses.labels("no.such")._value.get() == 1


def test_get_rules__shows_the_levels_and_data_files(rules_dir: Path) -> None:
    write_rules(rules_dir, THRESHOLD_IN_MATCH)
    lookups = StageRun(rules_dir).stage.describe(0)["lookups"]
    assert lookups["levels"] == ["host/{{ subject }}", "role/{{ tags.role }}", "dc/{{ tags.dc }}", "common"]
    assert len(lookups["data_files"]) == 4
