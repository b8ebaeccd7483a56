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


def test_only_an_alert_that_is_not_an_object__is_reported_and_the_others_still_parse() -> None:
    payload = copy.deepcopy(PAYLOAD)
    del payload["alerts"][1]["labels"]["alertname"]
    payload["alerts"].append("not an alert")
    result = parse_alertmanager(payload)
    assert [e.name for e in result.events] == ["ProbeFailure", "alert", "TargetMissing"]
    assert result.events[1].tags["vigil.parse.missing"] == "name"
    assert [(e.index, e.field) for e in result.errors] == [(3, "alerts[3]")]


@pytest.mark.parametrize(("labels", "subject", "missing"), [
    ({"alertname": "A", "instance": "i:9100", "job": "j", "pod": "p"}, "i:9100", None),
    ({"alertname": "A", "job": "j", "service": "s"}, "j", None),
    ({"alertname": "A", "service": "s", "pod": "p"}, "s", None),
    ({"alertname": "KubePodCrashLooping", "pod": "web-1", "namespace": "shop"}, "web-1", None),
    ({"alertname": "A", "namespace": "shop", "cluster": "eu"}, "shop", None),
    ({"alertname": "A", "node": "n1", "cluster": "eu"}, "n1", None),
    ({"alertname": "A", "hostname": "h1"}, "h1", None),
    ({"alertname": "Watchdog", "severity": "none", "prometheus": "monitoring/k8s"}, "Watchdog", "subject"),
    ({"severity": "page"}, "vigil", "subject,name"),
    ({}, "vigil", "subject,name"),
])
def test_subject__follows_the_documented_label_chain(labels: dict[str, str], subject: str, missing: str | None) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["alerts"][0]["labels"] = labels
    event = parse_alertmanager(payload).events[0]
    assert (event.subject, event.tags.get("vigil.parse.missing")) == (subject, missing)


@pytest.mark.parametrize("change", [{"version": "3"}, {"version": None}, {"version": "1", "orgId": 1}])
def test_any_version__is_accepted(change: dict[str, Any]) -> None:
    result = parse_alertmanager({**PAYLOAD, **change})
    assert (len(result.events), result.errors) == (3, [])


def test_not_a_webhook__names_the_field() -> None:
    with pytest.raises(ParseError) as caught:
        parse_alertmanager({**PAYLOAD, "alerts": {}})
    assert caught.value.field == "alerts"


@pytest.mark.parametrize(("alert_change", "subject", "missing"), [
    ({"labels": ["x"]}, "vigil", "subject,name"),
    ({"labels": {"alertname": "A", "job": {"nested": 1}}}, '{"nested": 1}', None),
    ({"status": "pending"}, "https://shop.example.org", None),
    ({"startsAt": "yesterday"}, "https://shop.example.org", "time"),
    ({"startsAt": None}, "https://shop.example.org", "time"),
])
def test_odd_alert__is_still_accepted(alert_change: dict[str, Any], subject: str, missing: str | None) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["alerts"][0].update(alert_change)
    result = parse_alertmanager(payload, received_ms=7)
    assert (len(result.events), result.errors) == (3, [])
    event = result.events[0]
    assert (event.subject, event.tags.get("vigil.parse.missing")) == (subject, missing)
    if missing == "time":
        assert event.time == 7
