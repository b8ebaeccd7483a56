"""`vigil events tail` lines: times are ISO-8601 UTC for people (`--json` keeps the epoch number)."""

from __future__ import annotations

from app.events_cli import format_event_line


def test_event_line__iso_utc_time_type_identity_severity_metrics_text() -> None:
    record = {"time": 1_700_000_000_123, "subject": "web1", "name": "load", "severity": 1,
              "metrics": {"load1": 3.5, "load5": 2.0}, "text": "busy"}
    assert format_event_line("vigil.Event", record) == \
        "2023-11-14T22:13:20.123Z vigil.Event web1/load sev=1 load1=3.5 load5=2 busy"


def test_event_line__custom_type_without_severity_metrics_or_text() -> None:
    record = {"time": 0, "subject": "db1", "name": "repair", "disk": "sdb"}
    assert format_event_line("acme.DiskRepair", record) == "1970-01-01T00:00:00.000Z acme.DiskRepair db1/repair sev=-"


def test_event_line__a_time_past_what_a_date_holds_is_still_printed() -> None:
    line = format_event_line("vigil.Event", {"time": 2**62, "subject": "s", "name": "n", "text": None})
    assert line.startswith(f"{2**62} ms since the epoch vigil.Event s/n")
