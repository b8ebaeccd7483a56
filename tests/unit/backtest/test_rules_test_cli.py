"""`vigil rules test` over capture files: replayed through the pipeline, expected actions at times,
JUnit XML for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from app.rules.cli import rules_group

from .conftest import T0, S, event, rules_dir
from .test_capture import RULES, _capture


def _files(tmp_path: Path) -> tuple[Path, Path]:
    events = [event("h1", "heartbeat", 0), event("db1", "disk", 1, severity=2), event("h1", "heartbeat", 2)]
    capture = tmp_path / "incident.jsonl"
    _capture(capture, events, T0 + 10 * S)
    return rules_dir(tmp_path, RULES), capture


def test_rules_test__capture_with_expected_actions_at_times_and_junit(tmp_path: Path) -> None:
    rules, capture = _files(tmp_path)
    expect = tmp_path / "incident.expect.jsonl"
    expect.write_text('{"rule": "disk-critical", "type": "print", "target": "db1", "at": "+1s"}\n'
                      '{"rule": "hb-missing", "type": "print", "target": "h1", "at": "2023-11-14T22:13:25Z"}\n')
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(capture), "--expect", str(expect),
                                              "--junit", str(junit), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["rule"], a["time_ms"] - T0) for a in lines] == [("disk-critical", 1000), ("hb-missing", 5000)]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == str(capture) and suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == [
        "expected #1: disk-critical print -> db1 at 2023-11-14T22:13:21.000Z",
        "expected #2: hb-missing print -> h1 at 2023-11-14T22:13:25.000Z", "no unexpected actions"]


def test_rules_test__a_missed_expectation_fails_its_case(tmp_path: Path) -> None:
    rules, capture = _files(tmp_path)
    expect = tmp_path / "wrong.expect.jsonl"
    expect.write_text('{"rule": "disk-critical", "type": "print", "target": "db1", "at": "+2s"}\n')
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(capture), "--expect", str(expect),
                                              "--junit", str(junit)])
    assert result.exit_code == 1
    assert "time_ms differs" in result.stderr and "unexpected action #2: hb-missing" in result.stderr
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "2"
    failures = [case.find("failure") for case in root.iter("testcase")]
    assert failures[0] is not None and "time_ms differs" in (failures[0].get("message") or "")
    assert failures[1] is not None and "hb-missing" in (failures[1].text or "")


def test_rules_test__until_runs_a_capture_to_a_time_of_its_own(tmp_path: Path) -> None:
    rules, capture = _files(tmp_path)
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(capture), "--until", "+4s"])
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["disk-critical"]


def test_rules_test__one_expect_per_events_file(tmp_path: Path) -> None:
    rules, capture = _files(tmp_path)
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(capture), "--events", str(capture),
                                              "--expect", str(capture)])
    assert result.exit_code == 2 and "one --expect per --events" in result.output
