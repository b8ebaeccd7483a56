"""The HTTP bridge over real HTTP (aiohttp test server): endpoints, auth, limits, errors, batches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.bridges.config import BridgeConfig
from app.bridges.http import BRIDGE_KEY, make_http_app
from app.bridges.parsers.github import github_signature
from app.bridges.sink import MAX_DEAD_LETTER_BYTES, DeliveryCallback, MemorySink, SinkUnavailable
from app.model.events import Event
from app.model.schemas import parse_schema_text

from .support import data_bytes, wait_until

DEPLOY = parse_schema_text(
    '{"type": "record", "name": "Deploy", "namespace": "acme", "fields": ['
    '{"name": "subject", "type": "string"}, {"name": "name", "type": "string"}, {"name": "time", "type": "long"}]}')
EVENT = {"subject": "web-1", "name": "load", "metrics": {"load1": 0.5}}
TOKEN = "t0ken-for-tests"
SECRET = "gh-secret"

Scenario = Callable[[TestClient, MemorySink], Awaitable[None]]


@contextlib.asynccontextmanager
async def _client(sink: MemorySink | None = None, **config: Any) -> AsyncIterator[tuple[TestClient, MemorySink]]:
    sink = sink if sink is not None else MemorySink({DEPLOY.fullname: DEPLOY})
    async with TestClient(TestServer(make_http_app(sink, BridgeConfig(**config)))) as client:
        yield client, sink


def _run(scenario: Scenario, sink: MemorySink | None = None, **config: Any) -> None:
    async def main() -> None:
        async with _client(sink, **config) as (client, used_sink):
            await scenario(client, used_sink)
    asyncio.run(main())


def _post_json(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, data=json.dumps(body).replace("Infinity", "1e400"),
                       headers={"Content-Type": "application/json", **headers})


def test_healthz_and_unknown_routes__answer_json() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await client.get("/healthz")
        assert (response.status, await response.json()) == (200, {"status": "ok", "problems": []})
        response = await client.get("/nowhere")
        assert response.status == 404 and (await response.json())["error"] == "Not Found"
        response = await client.get("/v1/events")
        assert response.status == 405 and "error" in await response.json()
    _run(scenario)


def test_events__single_event_is_accepted_with_origin_http() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", EVENT)
        assert (response.status, await response.json()) == (202, {"accepted": 1})
        (event,) = sink.events
        assert (event.subject, event.name, event.metrics, event.origin) == ("web-1", "load", {"load1": 0.5}, "http")
    _run(scenario)


def test_events__mixed_batch_sends_the_valid_items_and_lists_the_invalid_ones() -> None:
    batch = [
        EVENT,
        {**EVENT, "metrics": {"load1": float("inf")}},
        {"type": "acme.Deploy", "subject": "api", "name": "deploy", "time": 5},
        {"type": "acme.Deploy", "subject": "api", "name": "deploy", "time": "later"},
        {"type": "acme.Unknown", "subject": "api"},
        {**EVENT, "name": "load5"},
    ]

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", batch)
        body = await response.json()
        assert response.status == 207
        assert body["accepted"] == 3
        assert [(r["index"], r["field"]) for r in body["rejected"]] == [
            (1, "events[1].metrics.load1"), (3, "events[3].time"), (4, "events[4].type")]
        assert "finite" in body["rejected"][0]["error"]
        assert [e.name for e in sink.events] == ["load", "load5"]
        assert sink.typed == [("acme.Deploy", {"subject": "api", "name": "deploy", "time": 5})]
    _run(scenario)


def test_events__batch_with_nothing_valid_is_a_400_listing_every_item() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", {"events": [{"name": "x"}, {**EVENT, "severity": 9}]})
        body = await response.json()
        assert response.status == 400
        assert (body["field"], body["accepted"]) == ("events[0].subject", 0)
        assert [r["index"] for r in body["rejected"]] == [0, 1]
        assert sink.events == []
    _run(scenario)


@pytest.mark.parametrize(("data", "content_type", "status", "field"), [
    (b"{not json", "application/json", 400, "body"),
    (b"\xff\xfe", "application/json", 400, "body"),
    (b"[]", "application/json", 400, "events"),
    (json.dumps(EVENT).encode(), "text/plain", 415, "Content-Type"),
    (json.dumps(EVENT).encode(), None, 415, "Content-Type"),
])
def test_events__bad_bodies_get_a_clear_4xx_naming_the_field(data: bytes, content_type: str | None, status: int,
                                                             field: str) -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.post("/v1/events", data=data, headers=headers, skip_auto_headers={"Content-Type"})
        body = await response.json()
        assert (response.status, body["field"]) == (status, field)
        assert body["error"]
        assert (await client.get("/healthz")).status == 200  # still serving
    _run(scenario)


def test_oversized_bodies__get_413_with_or_without_content_length() -> None:
    big = json.dumps([EVENT] * 200).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        for data in (big, chunks()):
            response = await client.post("/v1/events", data=data, headers={"Content-Type": "application/json"})
            body = await response.json()
            assert (response.status, body["field"]) == (413, "body")
            assert "2048-byte limit" in body["error"]
        assert sink.events == []
        response = await _post_json(client, "/v1/events", EVENT)
        assert response.status == 202
    _run(scenario, max_body_bytes=2048)


def test_token__is_required_when_set_as_bearer_or_basic_password() -> None:
    basic = base64.b64encode(f"puppet:{TOKEN}".encode()).decode()

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {TOKEN}"},
                        {"Authorization": "Basic !!!"}, {"Authorization": f"Bearer {TOKEN}x"}):
            response = await _post_json(client, "/v1/events", EVENT, **headers)
            body = await response.json()
            assert (response.status, body["field"]) == (401, "Authorization")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert sink.events == []
        assert (await _post_json(client, "/v1/events", EVENT, Authorization=f"Bearer {TOKEN}")).status == 202
        assert (await _post_json(client, "/v1/events", EVENT, Authorization=f"Basic {basic}")).status == 202
        # Token endpoints are configurable; GitHub deliveries are signed instead.
        assert (await client.post("/v1/puppet", data=b"host: h\n",
                                  headers={"Content-Type": "application/x-yaml"})).status == 401
        push = data_bytes("github/push.json")
        response = await client.post("/v1/github", data=push, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push"})
        assert response.status == 202
    _run(scenario, api_token=TOKEN)


def test_token__guards_metrics_too_unless_metrics_open_and_never_healthz() -> None:
    async def guarded(client: TestClient, sink: MemorySink) -> None:
        assert (await client.get("/healthz")).status == 200
        refused = await client.get("/metrics")
        assert refused.status == 401 and (await refused.json())["field"] == "Authorization"
        assert (await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200

    async def open_metrics(client: TestClient, sink: MemorySink) -> None:
        assert (await client.get("/metrics")).status == 200
        assert (await _post_json(client, "/v1/events", EVENT)).status == 401

    _run(guarded, api_token=TOKEN)
    _run(open_metrics, api_token=TOKEN, metrics_open=True)


def test_alertmanager__every_alert_is_accepted_and_a_non_object_reported() -> None:
    payload = json.loads(data_bytes("alertmanager/v4_group.json"))

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/alertmanager", payload)
        assert (response.status, await response.json()) == (202, {"accepted": 3})
        # Alertmanager does not retry a 4xx: an alert without instance/job (or any version) is kept.
        payload["alerts"][2]["labels"] = {"alertname": "NoSubject"}
        response = await _post_json(client, "/v1/alertmanager", {**payload, "version": "3"})
        assert (response.status, await response.json()) == (202, {"accepted": 3})
        assert sink.events[-1].subject == "NoSubject"
        assert client.app[BRIDGE_KEY].metrics.partial_count("alertmanager", "subject") == 1
        payload["alerts"].append("not an alert")
        response = await _post_json(client, "/v1/alertmanager", payload)
        body = await response.json()
        assert response.status == 207
        assert body["rejected"] == [{"error": "must be an object, got a string", "field": "alerts[3]", "index": 3}]
        assert len(sink.events) == 9
    _run(scenario)


def test_github__signature_is_verified_when_a_secret_is_set() -> None:
    push = data_bytes("github/push.json")
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        for signature in (None, "sha256=00", github_signature("other", push)):
            extra = {"X-Hub-Signature-256": signature} if signature else {}
            response = await client.post("/v1/github", data=push, headers={**headers, **extra})
            body = await response.json()
            assert (response.status, body["field"]) == (401, "X-Hub-Signature-256")
        assert sink.events == []
        good = {**headers, "X-Hub-Signature-256": github_signature(SECRET, push)}
        response = await client.post("/v1/github", data=push, headers=good)
        assert (response.status, await response.json()) == (202, {"accepted": 1})
        (event,) = sink.events
        assert (event.subject, event.name, event.tags["delivery"]) == ("acme/storefront", "push", "d-1")

        ping = b'{"zen": "Design for failure.", "hook_id": 1}'
        response = await client.post("/v1/github", data=ping, headers={
            **headers, "X-GitHub-Event": "ping", "X-Hub-Signature-256": github_signature(SECRET, ping)})
        assert (response.status, await response.json()) == (200, {"accepted": 0})

        form = b"payload=" + quote_from_bytes(push).encode()
        response = await client.post("/v1/github", data=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(SECRET, form)})
        assert response.status == 202

        form = b"nothing=here"
        response = await client.post("/v1/github", data=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(SECRET, form)})
        assert (response.status, (await response.json())["field"]) == (400, "payload")

        unsigned_type = {**good, "X-GitHub-Event": ""}
        response = await client.post("/v1/github", data=push, headers=unsigned_type)
        assert (response.status, (await response.json())["field"]) == (400, "X-GitHub-Event")
    _run(scenario, github_secret=SECRET)


def test_nagios__json_and_form_results_become_status_events() -> None:
    result = {"host": "db-2", "service": "Load", "return_code": "2",
              "output": "CRITICAL - load average: 9.12|load1=9.12;4;8;0 load5=7.4;3;6;0"}

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert (await _post_json(client, "/v1/nagios", result)).status == 202
        response = await client.post("/v1/nagios", data=result)  # form-encoded
        assert response.status == 202
        assert [(e.severity, e.metrics) for e in sink.events] == [(2, {"load1": 9.12, "load5": 7.4})] * 2
        response = await _post_json(client, "/v1/nagios", {**result, "return_code": 7})
        assert (response.status, (await response.json())["field"]) == (400, "return_code")
    _run(scenario)


def test_puppet__yaml_and_json_reports_are_accepted() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await client.post("/v1/puppet", data=data_bytes("puppet/report_format12.yaml"),
                                     headers={"Content-Type": "application/x-yaml; charset=utf-8"})
        assert (response.status, await response.json()) == (202, {"accepted": 3})
        response = await client.post("/v1/puppet", data=data_bytes("puppet/report.json"),
                                     headers={"Content-Type": "application/json"})
        assert response.status == 202
        response = await client.post("/v1/puppet", data=b"--- !!python/object/apply:os.system ['true']\n",
                                     headers={"Content-Type": "application/x-yaml"})
        assert (response.status, (await response.json())["field"]) == (400, "body")
        response = await client.post("/v1/puppet", data=b"host: h\n", headers={"Content-Type": "text/plain"})
        assert response.status == 415
        assert {e.subject for e in sink.events} == {"web01.example.net", "web02.example.net"}
    _run(scenario)


def test_metrics__count_accepted_and_rejected_per_endpoint_and_reason() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        await _post_json(client, "/v1/events", [EVENT, EVENT, {"name": "x"}])
        await client.post("/v1/events", data=b"{}", headers={"Content-Type": "text/plain"})
        await client.post("/v1/nagios", data=b"{", headers={"Content-Type": "application/json"})
        response = await client.get("/metrics")
        text = await response.text()
        assert response.status == 200 and response.content_type == "text/plain"
        assert 'vigil_bridge_accepted_total{source="events"} 2.0' in text
        assert 'vigil_bridge_rejected_total{reason="invalid",source="events"} 1.0' in text
        assert 'vigil_bridge_rejected_total{reason="bad_content_type",source="events"} 1.0' in text
        assert 'vigil_bridge_rejected_total{reason="invalid",source="nagios"} 1.0' in text
    _run(scenario)


class _BrokenSink(MemorySink):
    """Accepts one event, then the bus is gone."""

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        if self.events:
            raise SinkUnavailable("broker unreachable")
        super().send(event, on_delivery=on_delivery)


def test_sink_failure__is_a_503_that_says_how_much_was_accepted_and_the_bridge_keeps_serving() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", [EVENT, EVENT, EVENT])
        body = await response.json()
        assert (response.status, body["accepted"]) == (503, 1)
        assert response.headers["Retry-After"] == "5"
        assert "broker unreachable" in body["error"]
        assert (await client.get("/healthz")).status == 200
    _run(scenario, sink=_BrokenSink())


class _RegistryDownSink(MemorySink):
    """Kafka is fine, but typed records need the schema registry, which is down."""

    def send_typed(self, type_fullname: str, record: dict[str, Any], *,
                   on_delivery: DeliveryCallback | None = None) -> None:
        raise SinkUnavailable("cannot fetch the schema of acme.Deploy from the schema registry: cannot reach "
                              "the schema registry at http://127.0.0.1:8081: connection refused")


def test_registry_outage__is_a_503_with_retry_after_and_never_a_dead_letter() -> None:
    typed = {"type": "acme.Deploy", "subject": "api", "name": "deploy"}

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", [EVENT, typed])
        body = await response.json()
        assert (response.status, response.headers["Retry-After"], body["accepted"]) == (503, "30", 1)
        assert "schema registry" in body["error"] and body["rejected"] == []
        assert sink.dead_letters == []  # the input is fine: the sender retries it
    _run(scenario, sink=_RegistryDownSink(), retry_after_s=30)


def test_app_cleanup__flushes_the_sink() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert (await client.get("/healthz")).status == 200
        assert sink.flushes == 0

    sink = MemorySink()
    _run(scenario, sink=sink)
    assert sink.flushes == 1


class _HoldingSink(MemorySink):
    """Keeps every record's delivery report until the test calls `release` (as Kafka acks later)."""

    def __init__(self) -> None:
        super().__init__({DEPLOY.fullname: DEPLOY})
        self.held: list[DeliveryCallback] = []

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        if on_delivery is not None:
            self.held.append(on_delivery)
        super().send(event)

    def release(self, error: str | None = None) -> None:
        held, self.held = self.held, []
        for report in held:
            report(error)


def test_2xx__is_answered_only_once_every_event_was_delivered() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert isinstance(sink, _HoldingSink)
        response_task = asyncio.create_task(_post_json(client, "/v1/events", [EVENT, EVENT]))
        await wait_until(lambda: len(sink.held) == 2, sink=sink)
        assert not response_task.done()  # the handler waits for the acknowledgements
        # Reports come from the sink's own thread in real life.
        await asyncio.get_running_loop().run_in_executor(None, sink.release)
        response = await response_task
        assert (response.status, await response.json()) == (202, {"accepted": 2})
    _run(scenario, sink=_HoldingSink())


def test_delivery_failure__is_a_503_saying_how_many_arrived() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert isinstance(sink, _HoldingSink)
        response_task = asyncio.create_task(_post_json(client, "/v1/events", EVENT))
        await wait_until(lambda: len(sink.held) == 1, sink=sink)
        sink.release("delivery to events failed: Local: Message timed out")
        response = await response_task
        body = await response.json()
        assert (response.status, body["accepted"]) == (503, 0)
        assert body["error"] == ("1 of 1 event(s) could not be delivered to Kafka: "
                                 "delivery to events failed: Local: Message timed out")
    _run(scenario, sink=_HoldingSink())


def test_no_acknowledgement_in_time__is_a_503_that_warns_of_duplicates_on_resend() -> None:
    async def scenario(client: TestClient, sink: MemorySink) -> None:
        response = await _post_json(client, "/v1/events", EVENT)
        body = await response.json()
        assert (response.status, body["accepted"]) == (503, 0)
        assert "did not acknowledge 1 of 1 event(s) within 0.2s" in body["error"]
        assert "duplicate" in body["error"]
        metrics = await (await client.get("/metrics")).text()
        assert 'vigil_bridge_rejected_total{reason="not_acknowledged",source="events"} 1.0' in metrics
    _run(scenario, sink=_HoldingSink(), delivery_timeout_s=0.2)


def test_rejected_input__goes_to_the_dead_letter_queue_once_authenticated() -> None:
    batch = [EVENT, {**EVENT, "severity": 9}, {"type": "acme.Deploy", "subject": "api", "name": "d", "time": "x"}]
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert (await _post_json(client, "/v1/events", {"name": "x"})).status == 401  # no token
        response = await client.post("/v1/events", data=b"[" * 20_000, headers={"Content-Type": "application/json",
                                                                             **bearer})
        assert response.status == 413
        push = data_bytes("github/push.json")
        response = await client.post("/v1/github", data=push, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"})
        assert response.status == 401
        assert sink.dead_letters == []  # unauthenticated or unread input never reaches the bus

        assert (await client.post("/v1/nagios", data=b"host=a", headers={"Content-Type": "text/csv",
                                                                         **bearer})).status == 415
        assert (await client.post("/v1/events", data=b"{nope", headers={"Content-Type": "application/json",
                                                                          **bearer})).status == 400
        assert (await _post_json(client, "/v1/events", batch, **bearer)).status == 207

        assert [(d.source, d.reason, d.peer) for d in sink.dead_letters] == [
            ("http/nagios", "bad_content_type", "127.0.0.1"), ("http/events", "invalid", "127.0.0.1"),
            ("http/events", "invalid", "127.0.0.1")]
        unsupported, garbage, partial = sink.dead_letters
        assert (unsupported.value, unsupported.detail.split(":")[0]) == (b"host=a", "Content-Type")
        assert garbage.value == b"{nope" and garbage.detail.startswith("body: not valid JSON")
        assert json.loads(partial.value) == batch
        assert partial.detail.startswith("[1] events[1].severity: ")
        assert "; [2] events[2].time: does not match schema acme.Deploy" in partial.detail
    _run(scenario, api_token=TOKEN, github_secret=SECRET, max_body_bytes=16_384)


def test_dead_letters__keep_a_bounded_prefix_of_huge_bodies() -> None:
    body = json.dumps([{"name": "x" * 1000}] * 400).encode()  # over MAX_DEAD_LETTER_BYTES

    async def scenario(client: TestClient, sink: MemorySink) -> None:
        assert (await client.post("/v1/events", data=body, headers={"Content-Type": "application/json"})).status == 400
        (letter,) = sink.dead_letters
        assert (len(letter.value), letter.size, letter.truncated) == (MAX_DEAD_LETTER_BYTES, len(body), True)
        assert body.startswith(letter.value)
        assert ("vigil.truncated", b"true") in letter.headers()
    _run(scenario, max_body_bytes=1_048_576)
