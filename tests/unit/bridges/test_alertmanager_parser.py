"""Alertmanager webhook (version 4) → one STATUS event per alert."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.alertmanager import parse_alertmanager
from app.model.events import Kind, Severity

from .support import data_bytes, data_json, iso_ms

PAYLOAD = data_json("alertmanager/v4_group.json")


def test_documented_payload__maps_every_alert() -> None:
    result = parse_alertmanager(data_bytes("alertmanager/v4_group.json"), received_ms=5)
    assert result.errors == []
    probe, load, missing = result.events

    assert (probe.subject, probe.name, probe.severity, probe.kind) == (
        "https://shop.example.org", "ProbeFailure", Severity.CRITICAL, Kind.STATUS)
    assert probe.text == "Blackbox probe failing: https://shop.example.org"
    assert probe.tags["job"] == "blackbox_http" and probe.tags["monitor"] == "eu-west"
    assert probe.time == iso_ms("2024-03-04T10:15:42.118390Z")
    assert probe.extended is not None
    assert probe.extended["annotations"]["description"].startswith("https://shop.example.org has failed")
    assert probe.extended["fingerprint"] == "4e2b1f0c9d8a7b66"
    assert probe.extended["receiver"] == "vigil"
    assert probe.origin == "alertmanager"

    # Resolved → OK whatever its severity label, at its end time.
    assert (load.subject, load.name, load.severity) == ("db-2.example.org:9100", "HighLoad", Severity.OK)
    assert load.time == iso_ms("2024-03-04T10:14:57.5+01:00")
    assert load.text == "load1 above 8 for 10 minutes"

    # No instance label: the job names the subject; no severity label: WARNING.
    assert (missing.subject, missing.name, missing.severity) == ("pushgateway", "TargetMissing", Severity.WARNING)


@pytest.mark.parametrize(("label", "severity"), [
    ("critical", Severity.CRITICAL), ("Warning", Severity.WARNING), ("info", Severity.OK),
    ("page", Severity.CRITICAL), ("P9-whatever", Severity.UNKNOWN),
])
def test_severity_label__maps_per_the_documented_table(label: str, severity: Severity) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["alerts"][0]["labels"]["severity"] = label
    assert parse_alertmanager(payload).events[0].severity == severity


def test_invalid_alert__is_reported_by_index_and_the_others_still_parse() -> None:
    payload = copy.deepcopy(PAYLOAD)
    del payload["alerts"][1]["labels"]["alertname"]
    payload["alerts"].append("not an alert")
    result = parse_alertmanager(payload)
    assert [e.name for e in result.events] == ["ProbeFailure", "TargetMissing"]
    assert [(e.index, e.field) for e in result.errors] == [(1, "alerts[1].labels.alertname"), (3, "alerts[3]")]


@pytest.mark.parametrize(("change", "field"), [
    ({"version": "3"}, "version"),
    ({"version": None}, "version"),
    ({"alerts": {}}, "alerts"),
])
def test_bad_payload__names_the_field(change: dict[str, Any], field: str) -> None:
    payload = {**PAYLOAD, **change}
    with pytest.raises(ParseError) as caught:
        parse_alertmanager(payload)
    assert caught.value.field == field


@pytest.mark.parametrize(("alert_change", "field"), [
    ({"labels": {"alertname": "A"}}, "alerts[0].labels"),
    ({"labels": ["x"]}, "alerts[0].labels"),
    ({"labels": {"alertname": "A", "job": {"nested": 1}}}, "alerts[0].labels.job"),
    ({"status": "pending"}, "alerts[0].status"),
    ({"startsAt": "yesterday"}, "alerts[0].startsAt"),
])
def test_bad_alert__names_the_field_with_its_index(alert_change: dict[str, Any], field: str) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["alerts"][0].update(alert_change)
    result = parse_alertmanager(payload)
    assert [e.field for e in result.errors] == [field]
    assert len(result.events) == 2
