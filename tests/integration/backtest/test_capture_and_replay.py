"""`vigil capture` cuts history into a fixture that `vigil rules test` replays like a backtest (with
expected actions and JUnit XML), and `vigil replay` copies history to a sandbox topic, keeping keys,
timestamps and headers, refusing the live events topic unless forced."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from app.backtest.cli import backtest_command, capture_command, replay_command
from app.config import Settings
from app.model.events import Event
from app.rules.cli import rules_group
from tests.integration.runtime.kafka_helpers import read_topic

from .conftest import T0, S, iso, produce, vigil, write_rules

RULES = """
rules:
  - name: disk-critical
    match: {name: disk}
    status: {to: CRITICAL}
    actions: [{print: {text: "{{ event.subject }}"}}]
  - name: went-silent
    status: {to: EXPIRED}
    actions: [{print: {}}]
  - name: hb-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 20s
    actions: [{print: {}}]
"""


def _incident(settings: Settings) -> list[Event]:
    events = [Event(subject="db1", name="heartbeat", time=T0 + i * 5 * S, ttl=10.0) for i in range(6)]
    events += [Event(subject="db1", name="disk", time=T0 + 12 * S, severity=2),
               Event(subject="web1", name="heartbeat", time=T0 + 3 * S, ttl=10.0),
               Event(subject="web1", name="disk", time=T0 + 14 * S, severity=2)]
    produce(settings, sorted(events, key=lambda e: e.time), headers=[("origin", b"integration")])
    return events


def test_capture__a_fixture_rules_test_replays_like_the_backtest(isolated_settings: Settings, tmp_path: Path) -> None:
    _incident(isolated_settings)
    rules = write_rules(tmp_path / "rules", RULES)
    window = ("--from", iso(T0), "--to", iso(T0 + 120 * S), "--subject", "db*")
    captured = vigil(isolated_settings, capture_command, *window)
    assert captured.exit_code == 0, captured.stderr
    lines = [json.loads(line) for line in captured.stdout.splitlines()]
    assert lines[0] == {"vigil_capture": 1, "topic": "events", "from": T0, "to": T0 + 120 * S, "subject": "db*"}
    assert len(lines) == 8 and {line["value"]["subject"] for line in lines[1:]} == {"db1"}
    assert all({"partition", "offset", "timestamp", "key", "type", "value"} <= line.keys() for line in lines[1:])
    assert "captured 7 record(s)" in captured.stderr
    fixture = tmp_path / "incident.jsonl"
    fixture.write_text(captured.stdout)

    report = tmp_path / "report.jsonl"
    backtest = vigil(isolated_settings, backtest_command, "--rules", rules, *window, "--report", report)
    assert backtest.exit_code == 0, backtest.stderr
    expected = [json.loads(line) for line in report.read_text().splitlines()]
    assert [e["rule"] for e in expected] == ["disk-critical", "went-silent", "hb-missing"]
    expect = tmp_path / "incident.expect.jsonl"
    expect.write_text("".join(json.dumps({"rule": e["rule"], "type": e["type"], "target": e["target"],
                                          "at": e["at"], "id": e["id"]}) + "\n" for e in expected))
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(fixture), "--expect", str(expect),
                                              "--junit", str(junit), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [e["id"] for e in expected]
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures")) == ("4", "0")

    (rules / "rules.yaml").write_text(RULES.replace("absent_for: 20s", "absent_for: 2m"))  # a change that breaks it
    result = CliRunner().invoke(rules_group, ["test", str(rules), "--events", str(fixture), "--expect", str(expect),
                                              "--junit", str(junit)])
    assert result.exit_code == 1 and "missing action (expected #3): hb-missing" in result.stderr
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_replay__copies_keys_timestamps_headers_and_bytes_to_a_sandbox(isolated_settings: Settings) -> None:
    _incident(isolated_settings)
    sandbox = f"sandbox-{uuid.uuid4().hex[:8]}"
    window = ("--from", iso(T0), "--to", iso(T0 + 120 * S))
    result = vigil(isolated_settings, replay_command, "--to-topic", sandbox, *window, "--create", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["copied"] == 9
    source = {(m.key(), m.value()): m for m in read_topic(isolated_settings, isolated_settings.topic("events"),
                                                           expect=9)}
    copied = read_topic(isolated_settings, sandbox, expect=9)
    assert len(copied) == 9
    for m in copied:
        original = source[(m.key(), m.value())]
        assert (m.partition(), m.timestamp()[1], m.headers()) == (original.partition(), original.timestamp()[1],
                                                                 [("origin", b"integration")])
    for partition in {m.partition() for m in copied}:  # each partition's records in their order
        stamps = [m.timestamp()[1] for m in sorted(copied, key=lambda m: m.offset()) if m.partition() == partition]
        assert stamps == sorted(stamps)

    only_web = f"sandbox-{uuid.uuid4().hex[:8]}"
    result = vigil(isolated_settings, replay_command, "--to-topic", only_web, *window, "--subject", "web*",
                   "--create", "--speed", "100x")
    assert result.exit_code == 0, result.stderr
    assert "copied 2 record(s)" in result.stdout
    assert {m.key() for m in read_topic(isolated_settings, only_web, expect=2)} == {b"web1/heartbeat", b"web1/disk"}


def test_replay__refuses_the_live_events_topic_unless_forced(isolated_settings: Settings) -> None:
    live = isolated_settings.topic("events")
    result = vigil(isolated_settings, replay_command, "--to-topic", live, "--topic", "alerts")
    assert result.exit_code == 1
    assert f"refusing to write to the live events topic {live}" in result.stderr
    missing = vigil(isolated_settings, replay_command, "--to-topic", f"nowhere-{uuid.uuid4().hex[:6]}")
    assert missing.exit_code == 1 and "does not exist; create it, or pass --create" in missing.stderr
