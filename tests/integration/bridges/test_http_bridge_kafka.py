"""The HTTP bridge on the real Kafka: a 2xx means the events are on the events topic; rejected
input is answered, and what passed authentication lands on the dead-letter topic, nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from app.bridges.parsers.github import github_signature
from app.config import Settings
from tests.integration.bridges.conftest import register_deploy_type
from tests.unit.bridges.support import data_bytes

from .conftest import HttpBridgeHandle, read_dead_letters, read_events

SECRET = "gh-secret"
JSON = {"Content-Type": "application/json"}




def _post(url: str, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=data, headers=headers, timeout=30)


def test_events__vigil_and_custom_types_land_and_invalid_items_go_to_the_dlq(
        isolated_settings: Settings, start_http_bridge: Callable[..., HttpBridgeHandle]) -> None:
    deploy = register_deploy_type(isolated_settings)
    bridge = start_http_bridge()
    url = f"{bridge.url}/v1/events"

    response = _post(url, {"subject": "web-1", "name": "load", "kind": "METRIC", "metrics": {"load1": 0.5}})
    assert (response.status_code, response.json()) == (202, {"accepted": 1})

    batch = [
        {"subject": "web-2", "name": "load", "metrics": {"load1": 1.5}},
        {"subject": "web-3", "name": "load", "severity": 9},
        {"type": deploy, "subject": "api", "name": "deploy", "version": "1.2.3"},
        {"type": deploy, "subject": "api", "name": "deploy", "version": 7},
    ]
    response = _post(url, batch)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(item["index"], item["field"]) for item in body["rejected"]] == [
        (1, "events[1].severity"), (3, "events[3].version")]

    response = _post(url, b'{"subject": "web-4", ', JSON)
    assert (response.status_code, response.json()["field"]) == (400, "body")

    events = read_events(isolated_settings, expect=3)
    landed = sorted((kind, record["subject"]) for kind, record in events)
    assert landed == sorted([("vigil.Event", "web-1"), ("vigil.Event", "web-2"), (deploy, "api")])
    (typed,) = [record for kind, record in events if kind == deploy]
    assert typed["version"] == "1.2.3" and typed["time"] > 0  # time filled in on receipt
    web1 = next(record for _, record in events if record["subject"] == "web-1")
    assert (web1["metrics"], web1["origin"]) == ({"load1": 0.5}, "http")

    letters = read_dead_letters(isolated_settings, expect=2)
    assert [letter.headers["vigil.reason"] for letter in letters] == ["invalid", "invalid"]
    partial, garbage = letters  # one partition: in the order the requests were answered
    assert json.loads(partial.value) == batch  # the whole request, as sent
    assert partial.headers["vigil.source"] == "http/events"
    assert "events[1].severity" in partial.headers["vigil.error"]
    assert "events[3].version" in partial.headers["vigil.error"]
    assert partial.headers["vigil.peer"] == "127.0.0.1"
    assert garbage.value == b'{"subject": "web-4", '
    assert (garbage.headers["vigil.reason"], garbage.headers["vigil.error"].split(":")[0]) == ("invalid", "body")


def test_webhooks__alertmanager_nagios_puppet_become_events(
        isolated_settings: Settings, start_http_bridge: Callable[..., HttpBridgeHandle]) -> None:
    bridge = start_http_bridge()

    response = _post(f"{bridge.url}/v1/alertmanager", data_bytes("alertmanager/v4_group.json"))
    assert (response.status_code, response.json()) == (202, {"accepted": 3})
    nagios = {"host": "db-2", "service": "Load", "return_code": 2,
              "output": "CRITICAL - load average: 9.12|load1=9.12;4;8;0 load5=7.4;3;6;0"}
    response = _post(f"{bridge.url}/v1/nagios", nagios)
    assert (response.status_code, response.json()) == (202, {"accepted": 1})
    response = _post(f"{bridge.url}/v1/puppet", data_bytes("puppet/report_format12.yaml"),
                     {"Content-Type": "application/x-yaml"})
    assert (response.status_code, response.json()) == (202, {"accepted": 3})

    events = [record for _, record in read_events(isolated_settings, expect=7)]
    assert sorted({record["origin"] for record in events}) == ["alertmanager", "nagios", "puppet"]
    assert len(events) == 7
    (check,) = [record for record in events if record["origin"] == "nagios"]
    assert (check["subject"], check["name"], check["severity"]) == ("db-2", "Load", 2)
    assert check["metrics"] == {"load1": 9.12, "load5": 7.4}
    alerts = {record["subject"] for record in events if record["origin"] == "alertmanager"}
    assert "db-2.example.org:9100" in alerts
    assert {record["subject"] for record in events if record["origin"] == "puppet"} == {"web01.example.net"}


def test_github__signed_deliveries_land_and_unsigned_ones_reach_no_topic(
        isolated_settings: Settings, start_http_bridge: Callable[..., HttpBridgeHandle]) -> None:
    bridge = start_http_bridge(github_secret=SECRET)
    url = f"{bridge.url}/v1/github"
    push = data_bytes("github/push.json")
    headers = {**JSON, "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-42"}

    forged = _post(url, push, {**headers, "X-Hub-Signature-256": github_signature("not-the-secret", push)})
    assert (forged.status_code, forged.json()["field"]) == (401, "X-Hub-Signature-256")
    signed = _post(url, push, {**headers, "X-Hub-Signature-256": github_signature(SECRET, push)})
    assert (signed.status_code, signed.json()) == (202, {"accepted": 1})
    # Signed but unusable: this one (and only this one) goes to the dead-letter topic.
    form = b"nothing=here"
    unusable = _post(url, form, {"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push",
                                 "X-Hub-Signature-256": github_signature(SECRET, form)})
    assert unusable.status_code == 400

    ((kind, event),) = read_events(isolated_settings, expect=1)
    assert (kind, event["subject"], event["name"], event["tags"]["delivery"]) == (
        "vigil.Event", "acme/storefront", "push", "d-42")
    (letter,) = read_dead_letters(isolated_settings, expect=1)
    assert (letter.value, letter.headers["vigil.source"]) == (form, "http/github")
    assert letter.headers["vigil.error"].startswith("payload:")
    assert bridge.metrics.rejected_count("github", "bad_signature") == 1
