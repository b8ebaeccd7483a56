"""Offline runs (`vigil rules test`), expectations, input records, and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.rules.cli import rules_group
from app.rules.offline import (
    EventTimeTimers,
    InputError,
    RulesInvalidError,
    compare_actions,
    normalise_record,
    read_jsonl,
    run_offline,
)

from .conftest import DATA, REPO

GOLDEN = DATA / "golden"


def golden_actions(until_ms: int | None = None) -> list[Any]:
    return run_offline(GOLDEN / "rules", read_jsonl(GOLDEN / "events.jsonl"), until_ms=until_ms)


def test_golden__actions_match_the_expectation_file() -> None:
    assert compare_actions(golden_actions(), list(read_jsonl(GOLDEN / "expected.jsonl"))) == []


def test_golden__until_lets_pending_absence_timers_fire() -> None:
    late = [(a.rule, a.target, a.time_ms) for a in golden_actions(until_ms=1_000_000)[4:]]
    assert late == [("beacon-silent", "h2", 700_000), ("beacon-silent", "h1", 800_000)]


def test_golden__rerun_gives_the_same_ids() -> None:
    assert [a.id for a in golden_actions()] == [a.id for a in golden_actions()]


def test_run_offline__broken_rules_raise_with_every_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - name: a\n    absent_for: x\n")
    with pytest.raises(RulesInvalidError) as info:
        run_offline(tmp_path, [])
    assert [e.line for e in info.value.errors] == [2, 3]


# --- compare_actions ----------------------------------------------------------------------------------

def act(rule: str = "r", target: str = "t", **extra: Any) -> dict[str, Any]:
    return {"rule": rule, "type": "print", "target": target, "params": {}, "time_ms": 1, "id": "i", **extra}


@pytest.mark.parametrize(("actual", "expected", "differences"), [
    ([act()], [act()], []),
    ([act()], [{"rule": "r", "type": "print", "target": "t"}], []),  # unstated fields are not compared
    ([act(time_ms=5)], [{"rule": "r", "type": "print", "target": "t", "time": 5}], []),  # `time` = time_ms
    ([act()], [act(params={"a": 1})], ["action #1 (expected #1): params differs: expected {'a': 1}, got {}"]),
    ([act()], [act(id="other")], ["action #1 (expected #1): id differs: expected 'other', got 'i'"]),
    ([act()], [act(time_ms=2)], ["action #1 (expected #1): time_ms differs: expected 2, got 1"]),
    ([], [act()], ["missing action (expected #1): r print -> t {}"]),
    ([act()], [], ["unexpected action #1: r print -> t {}"]),
    ([act("a"), act("b")], [act("b"), act("a")], ["missing action (expected #1): b print -> t {}",
                                                  "unexpected action #2: b print -> t {}"]),  # order matters
    ([act("a"), act("x"), act("c")], [act("a"), act("c")], ["unexpected action #2: x print -> t {}"]),
    ([act(target="u")], [act()], ["action #1 (expected #1): target differs: expected 't', got 'u'"]),
])
def test_compare_actions__reports_differences(actual: list[dict[str, Any]], expected: list[dict[str, Any]],
                                              differences: list[str]) -> None:
    assert compare_actions(actual, expected) == differences


# --- input records ------------------------------------------------------------------------------------

def test_normalise__event_defaults_kind_case_and_extended_object() -> None:
    kind, record, event_type = normalise_record(
        {"subject": "a", "name": "b", "time": 5, "kind": "metric", "extended": {"x": 1}}, 1)
    assert (kind, event_type, record["kind"], record["extended"], record["tags"]) == (
        "event", "vigil.Event", "METRIC", '{"x":1}', {})
    assert record["id"] == normalise_record({"subject": "a", "name": "b", "time": 5, "kind": "metric",
                                             "extended": {"x": 1}}, 1)[1]["id"]


def test_normalise__transitions_and_custom_types() -> None:
    assert normalise_record({"subject": "a", "name": "b", "time": 1, "from_state": "OK", "to_state": "CRITICAL"},
                            1)[0::2] == ("transition", "vigil.Alert")
    kind, record, event_type = normalise_record({"type": "acme.X", "subject": "a", "name": "b", "time": 1, "v": 2}, 1)
    assert (kind, event_type, record["v"], "type" in record) == ("event", "acme.X", 2, False)


@pytest.mark.parametrize(("record", "message"), [
    ({"subject": "a", "name": "b"}, "record 3: `time` must be an integer"),
    ({"subject": "a", "name": "b", "time": "now"}, "`time` must be an integer"),
    ({"subject": "", "name": "b", "time": 1}, "subject: Value error, must not be empty"),
    ({"subject": "a", "name": "b", "time": 1, "kind": "LOUD"}, "kind"),
    ({"subject": "a", "name": "b", "time": 1, "metrics": {"m": "x"}}, "metrics.m"),
    ({"type": "acme.X", "name": "b", "time": 1}, "custom record acme.X lacks subject"),
    ([1, 2], "expected a JSON object"),
])
def test_normalise__bad_records_name_the_record(record: Any, message: str) -> None:
    with pytest.raises(InputError, match=None) as info:
        normalise_record(record, 3)
    assert message in str(info.value) and "record 3" in str(info.value)


def test_read_jsonl__skips_blanks_and_comments_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('# comment\n\n{"a": 1}\n{oops\n')
    lines = read_jsonl(path)
    assert next(lines) == {"a": 1}
    with pytest.raises(InputError, match=r"e\.jsonl:4: not JSON"):
        next(lines)


def test_event_time_timers__due_in_time_then_key_order() -> None:
    timers = EventTimeTimers()
    timers.schedule("b", 10)
    timers.schedule("a", 10)
    timers.schedule("c", 5)
    timers.schedule("late", 99)
    timers.cancel("late")
    assert [timers.pop_due(50)[0:2] for _ in range(3)] == [("c", 5), ("a", 10), ("b", 10)]  # type: ignore[index]
    assert timers.pop_due(10**9) is None


def test_event_time_timers__rearming_replaces_the_earlier_time() -> None:
    timers = EventTimeTimers()
    timers.schedule("a", 10, payload=1)
    timers.schedule("a", 50, payload=2)
    assert timers.pop_due(20) is None
    assert timers.pop_due(60) == ("a", 50, 2) and len(timers) == 0


# --- CLI ----------------------------------------------------------------------------------------------

def invoke(*args: str) -> Any:
    return CliRunner().invoke(rules_group, list(args))


def test_cli_check__ok_and_errors(tmp_path: Path) -> None:
    ok = invoke("check", str(REPO / "rules"))
    assert ok.exit_code == 0 and "no errors" in ok.output
    (tmp_path / "bad.yaml").write_text("rules:\n  - name: a\n    match: {name: x}\n    actoins: []\n")
    bad = invoke("check", str(tmp_path))
    assert bad.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:4: rule: unknown key `actoins` (did you mean `actions`?)" in bad.output
    assert f"{tmp_path / 'bad.yaml'}:2: rule needs `actions:`" in bad.output


def test_cli_check__defaults_to_the_configured_rules_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli

    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(cli, ["rules", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rules: ")


def test_cli_test__prints_actions_and_checks_expectations(tmp_path: Path) -> None:
    events, expected = str(GOLDEN / "events.jsonl"), str(GOLDEN / "expected.jsonl")
    text = invoke("test", str(GOLDEN / "rules"), "--events", events)
    assert text.exit_code == 0 and "went-critical http -> hooks" in text.output
    passed = invoke("test", str(GOLDEN / "rules"), "--events", events, "--expect", expected)
    assert passed.exit_code == 0 and "OK: 4 action(s) as expected" in passed.output

    as_json = invoke("test", str(GOLDEN / "rules"), "--events", events, "--json")
    golden_with_ids = tmp_path / "with-ids.jsonl"
    golden_with_ids.write_text(as_json.stdout)
    assert all("id" in json.loads(line) for line in as_json.stdout.splitlines())
    again = invoke("test", str(GOLDEN / "rules"), "--events", events, "--expect", str(golden_with_ids))
    assert again.exit_code == 0

    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(Path(expected).read_text().replace("took 700s", "took 7s"))
    failed = invoke("test", str(GOLDEN / "rules"), "--events", events, "--expect", str(wrong))
    assert failed.exit_code == 1 and "params differs" in failed.output and "1 difference(s)" in failed.output


def test_cli_test__bad_input_and_bad_rules_fail_clearly(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"subject": "a", "name": "b"}\n')
    bad_input = invoke("test", str(GOLDEN / "rules"), "--events", str(events))
    assert bad_input.exit_code == 1 and "record 1: `time` must be an integer" in bad_input.output
    (tmp_path / "r.yaml").write_text("rules: [{name: a}]\n")
    bad_rules = invoke("test", str(tmp_path), "--events", str(events))
    assert bad_rules.exit_code == 1 and "r.yaml:1:" in bad_rules.output


def test_cli_test__render_failures_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules: [{name: a, match: {name: b}, actions: [{print: {x: '{{ nope }}'}}]}]\n")
    events = tmp_path / "e.jsonl"
    events.write_text('{"subject": "s", "name": "b", "time": 1}\n')
    result = invoke("test", str(tmp_path), "--events", str(events))
    assert result.exit_code == 0 and "warning: rule a: action 1 (print) dropped: params.x: UndefinedError" \
        in result.output
