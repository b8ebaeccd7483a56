"""`vigil backtest` on the real Kafka: the summary and the report file, --json, --subject, two rule
sets compared, and bad input (unreadable records, an empty range, broken rules, a range backwards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.backtest.cli import backtest_command
from app.cli import main
from app.config import Settings
from app.model.events import Event

from .conftest import T0, S, iso, produce, produce_raw, vigil, write_rules

RULES = """
rules:
  - name: disk-critical
    match: {name: disk}
    status: {to: CRITICAL}
    actions: [{print: {text: "{{ event.subject }} disk critical"}}]
  - name: load-hot
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 30s}
    when: {gt: 20}
    throttle: {once_within: 2m}
    actions: [{print: {text: "load {{ value }}"}}]
  - name: hb-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 30s
    actions: [{print: {}}]
"""


def _history(settings: Settings) -> None:
    """Ten minutes: three hosts' load (web1 hot), db1's disk going critical twice, h1 beating then silent."""
    events = []
    for i in range(60):
        at = T0 + i * 10 * S
        events += [Event(subject=f"web{n}", name="load", time=at + n, metrics={"load1": 25.0 if n == 1 else 5.0})
                   for n in (1, 2, 3)]
        if i < 20:
            events.append(Event(subject="h1", name="heartbeat", time=at + 5))
    events += [Event(subject="db1", name="disk", time=T0 + 60 * S, severity=2),
               Event(subject="db1", name="disk", time=T0 + 120 * S, severity=0),
               Event(subject="db1", name="disk", time=T0 + 300 * S, severity=2)]
    produce(settings, sorted(events, key=lambda e: e.time))


@pytest.fixture
def history(isolated_settings: Settings) -> Settings:
    _history(isolated_settings)
    return isolated_settings


def _run(settings: Settings, *args: object) -> tuple[int, str, str]:
    result = vigil(settings, backtest_command, "--from", iso(T0), "--to", iso(T0 + 600 * S), *args)
    return result.exit_code, result.stdout, result.stderr


def test_backtest__summary_table_and_report_of_every_would_be_action(history: Settings, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", RULES)
    code, out, err = _run(history, "--rules", rules, "--report", tmp_path / "report.jsonl")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["disk-critical"][1:4] == ["2", "2", "1"]  # firings, actions, targets
    assert rows["load-hot"][1:4] == ["5", "5", "1"]  # web1 every 2 minutes over 10
    assert rows["hb-missing"][1:4] == ["1", "1", "1"]
    assert rows["disk-critical"][4:] == [iso(T0 + 60 * S), iso(T0 + 300 * S)]
    assert "203 events" in err and "8 would-be action(s)" in err
    report = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert len(report) == 8 and [r["time"] for r in report] == sorted(r["time"] for r in report)
    silent = next(r for r in report if r["rule"] == "hb-missing")
    assert (silent["target"], silent["time"]) == ("h1", T0 + 190 * S + 5 + 30 * S)  # the last beat + 30 s
    critical = next(r for r in report if r["rule"] == "disk-critical")
    assert critical["params"] == {"text": "db1 disk critical"} and critical["causes"] == [critical["event_id"]]
    hot = next(r for r in report if r["rule"] == "load-hot")
    assert len(hot["causes"]) == 1 and hot["causes"][0] == hot["event_id"]  # one sample: its own event


def test_backtest__json_and_subject(history: Settings, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", RULES)
    code, out, _ = _run(history, "--rules", rules, "--subject", "db*", "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["events"], summary["filtered"], summary["replayed"]) == (203, 200, 3)
    assert [r["rule"] for r in summary["rules"]] == ["disk-critical"] and summary["actions"] == 2
    assert summary["unreadable"] == 0 and summary["no_data"] is False


def test_backtest__compare_shows_firings_only_in_a_only_in_b_and_in_both(history: Settings, tmp_path: Path) -> None:
    a = write_rules(tmp_path / "a", RULES)
    b = write_rules(tmp_path / "b", RULES.replace("when: {gt: 20}", "when: {gt: 30}")
                    .replace("absent_for: 30s", "absent_for: 20s").replace("once_within: 2m", "once_within: 1m"))
    code, out, err = _run(history, "--rules", a, "--compare", b, "--json", "--report", tmp_path / "diff.jsonl")
    assert code == 0, err
    diff = {(d["rule"], d["target"]): d for d in json.loads(out)["compare"]}
    assert (diff[("load-hot", "web1")]["only_a"], diff[("load-hot", "web1")]["only_b"]) == (5, 0)  # 25 < 30
    first_gone = diff[("load-hot", "web1")]["first_only_a"]
    assert first_gone["at"] == iso(first_gone["time"]) and first_gone["causes"] == [first_gone["event_id"]]
    silent = diff[("hb-missing", "h1")]  # the same silence, found 10 s sooner under B
    assert (silent["only_a"], silent["only_b"], silent["both"], silent["moved"]) == (0, 0, 1, 1)
    assert silent["first_moved"]["time_b"] == silent["first_moved"]["time_a"] - 10 * S
    assert (diff[("disk-critical", "db1")]["both"], diff[("disk-critical", "db1")]["only_a"]) == (2, 0)
    sides = [json.loads(line)["side"] for line in (tmp_path / "diff.jsonl").read_text().splitlines()]
    assert sorted(sides) == ["a", "a", "a", "a", "a", "both", "both", "both"]
    code, text, _ = _run(history, "--rules", a, "--compare", b)
    assert code == 0 and "ONLY A" in text and "(moved; " in text


def test_backtest__unreadable_records_counted_reported_and_skipped(isolated_settings: Settings,
                                                                    tmp_path: Path) -> None:
    produce(isolated_settings, [Event(subject="db1", name="disk", time=T0 + S, severity=2)])
    produce_raw(isolated_settings, [(b"db1/disk", b"not avro at all", T0 + 2 * S),
                                    (b"db1/disk", b"\x00\x00\x00\x7f\xffjunk", T0 + 3 * S)])
    produce(isolated_settings, [Event(subject="db2", name="disk", time=T0 + 4 * S, severity=2)])
    rules = write_rules(tmp_path / "rules", RULES)
    code, out, err = _run(isolated_settings, "--rules", rules, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["events"], summary["unreadable"], summary["actions"]) == (4, 2, 2)
    topic = isolated_settings.topic("events")
    located = [(u["topic"], u["offset"]) for u in summary["unreadable_records"]]
    assert located == [(topic, 1), (topic, 2)] and all(u["reason"] for u in summary["unreadable_records"])
    assert f"unreadable record skipped: {topic}[" in err and "@1: " in err
    code, _, err = _run(isolated_settings, "--rules", rules)
    assert code == 0 and "2 unreadable record(s) skipped" in err


def test_backtest__a_range_without_data_says_so_and_exits_0(isolated_settings: Settings, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", RULES)
    code, out, err = _run(isolated_settings, "--rules", rules)
    assert code == 0, err
    assert out.strip() == (f"no events in {isolated_settings.topic('events')} in "
                           f"{iso(T0)} .. {iso(T0 + 600 * S)}")


def test_backtest__invalid_rules_fail_before_anything_is_read(isolated_settings: Settings, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", "rules:\n  - name: bad\n    absent_for: soon\n    actions: [{print: {}}]\n")
    code, out, err = _run(isolated_settings, "--rules", rules, "--topic", "no-such-topic")
    assert code == 1 and out == ""
    assert f"{rules / 'rules.yaml'}:3:" in err and "absent_for" in err
    assert "no-such-topic" not in err  # nothing was read


def test_backtest__from_after_to_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write_rules(tmp_path / "rules", RULES)
    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--rules", str(rules), "--from", iso(T0), "--to", iso(T0 - S)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: --from {iso(T0)} is after --to {iso(T0 - S)} (see `vigil backtest --help`)"]
