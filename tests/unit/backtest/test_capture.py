"""Capture files: written one record per line, read back per partition, replayed like a backtest."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.backtest.capture import (
    CaptureError,
    capture_header,
    capture_line,
    is_capture_line,
    read_capture,
    replay_capture,
)
from app.backtest.times import TimeRange

from .conftest import T0, S, event, fired, partitioned, replay, rules_dir

RULES = """
rules:
  - name: hb-missing
    match: {name: heartbeat}
    absent_for: 3s
    actions: [{print: {}}]
  - name: disk-critical
    status: {to: CRITICAL}
    actions: [{print: {}}]
"""


def _capture(path: Path, events: list[dict[str, object]], until_ms: int) -> None:
    out = io.BytesIO()
    out.write(capture_header("events", TimeRange(T0, until_ms), None))
    for p, records in partitioned(events, 3).items():
        for record in records:
            out.write(capture_line(record, p))
    path.write_bytes(out.getvalue())


def test_capture__round_trip_and_the_same_actions_as_a_backtest(tmp_path: Path) -> None:
    events = [event("h1", "heartbeat", 0), event("db1", "disk", 1, severity=2, extended='{"a": 1}'),
              event("h1", "heartbeat", 2)]
    path = tmp_path / "incident.jsonl"
    _capture(path, events, T0 + 10 * S)
    capture = read_capture(path)
    assert (capture.topic, capture.from_ms, capture.to_ms, capture.count) == ("events", T0, T0 + 10 * S, 3)
    assert sorted((r.value for rs in capture.records.values() for r in rs), key=lambda v: v["time"]) == events
    rules = [rules_dir(tmp_path, RULES)]
    actions = replay_capture(capture, rules)
    assert fired(actions) == [("disk-critical", "db1", 1.0), ("hb-missing", "h1", 5.0)]
    assert [a.id for a in actions] == [a.id for a in replay(rules, events, until_s=10)]
    assert fired(replay_capture(capture, rules, until_ms=T0 + 4 * S)) == [("disk-critical", "db1", 1.0)]


def test_capture__bytes_are_base64() -> None:
    record = partitioned([event("h1", "x", 0, blob=b"\x00\xff")], 1)[0][0]
    assert b'"blob":"AP8="' in capture_line(record, 0)


def test_read_capture__names_the_line_that_is_not_a_capture_record(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"vigil_capture": 1, "topic": "events"}\n{"subject": "web1", "name": "x", "time": 1}\n')
    with pytest.raises(CaptureError, match="mixed.jsonl:2: not a capture record"):
        read_capture(path)


def test_is_capture_line() -> None:
    assert is_capture_line({"vigil_capture": 1})
    assert is_capture_line({"partition": 0, "offset": 1, "value": {}})
    assert not is_capture_line({"subject": "web1", "name": "x", "time": 1})
