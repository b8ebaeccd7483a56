"""The HTTP bridge's guards over real HTTP (aiohttp test server, in-memory sink and ledger):
redeliveries answered without producing again, and dead letters rate-limited into summaries."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from app.bridges.config import BridgeConfig
from app.bridges.dead_letters import DeadLetterGate
from app.bridges.http import make_http_app
from app.bridges.ledger import MemoryDeliveryLedger
from app.bridges.metrics import BridgeMetrics
from app.bridges.sink import DeliveryCallback, MemorySink, SinkUnavailable
from app.dead_letter_limit import SUMMARY_REASON, DeadLetterLimits
from app.model.events import Event
from app.model.ids import deterministic_id

from .support import data_bytes, data_json

EVENT = {"subject": "web-1", "name": "deploy", "kind": "ARCHIVE", "text": "v42"}
JSON = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def _client(sink: MemorySink | None = None, *, ledger: MemoryDeliveryLedger | None = None,
                  dead_letters: DeadLetterGate | None = None, metrics: BridgeMetrics | None = None,
                  **config: Any) -> AsyncIterator[tuple[TestClient, MemorySink]]:
    sink = sink if sink is not None else MemorySink()
    app = make_http_app(sink, BridgeConfig(**config), ledger=ledger, dead_letters=dead_letters, metrics=metrics)
    async with TestClient(TestServer(app)) as client:
        yield client, sink


async def _post(client: TestClient, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(path, data=data, headers={**JSON, **headers})
    return response.status, await response.json()


def test_events__a_retry_with_the_same_idempotency_key_produces_nothing_more() -> None:
    async def main() -> None:
        metrics = BridgeMetrics()
        async with _client(metrics=metrics) as (client, sink):
            batch = [EVENT, {**EVENT, "subject": "web-2", "id": "my-own-id"}]
            assert await _post(client, "/v1/events", batch, **{"Idempotency-Key": "k-1"}) == (202, {"accepted": 2})
            for _ in range(3):  # the client did not hear the answer and retries
                assert await _post(client, "/v1/events", batch, **{"Idempotency-Key": "k-1"}) == (
                    202, {"accepted": 2, "duplicate": True})
            assert await _post(client, "/v1/events", batch, **{"Idempotency-Key": '"k-2"'}) == (202, {"accepted": 2})
            assert await _post(client, "/v1/events", batch) == (202, {"accepted": 2})  # no key: no dedup
            assert len(sink.events) == 6
            first = sink.events[:2]
            # Ids come from the key (an event naming its own keeps it): a copy let through is recognisable.
            assert [e.id for e in first] == [deterministic_id("delivery", "events/idempotency-key/k-1", "0"),
                                             "my-own-id"]
            assert metrics.duplicate_count("events") == 3
    asyncio.run(main())


def test_events__an_idempotency_key_reused_for_another_body_is_a_422() -> None:
    async def main() -> None:
        async with _client() as (client, sink):
            assert (await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k"}))[0] == 202
            status, body = await _post(client, "/v1/events", {**EVENT, "text": "v43"}, **{"Idempotency-Key": "k"})
            assert (status, body["field"]) == (422, "Idempotency-Key")
            assert "already used for a request with another body" in body["error"]
            assert len(sink.events) == 1
            status, body = await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k" * 300})
            assert (status, body["field"]) == (400, "Idempotency-Key")
    asyncio.run(main())


def test_github__a_redelivery_with_the_same_delivery_id_produces_nothing_more() -> None:
    push = data_bytes("github/push.json")

    async def main() -> None:
        async with _client() as (client, sink):
            headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
            assert await _post(client, "/v1/github", push, **headers) == (202, {"accepted": 1})
            assert await _post(client, "/v1/github", push, **headers) == (202, {"accepted": 1, "duplicate": True})
            headers["X-GitHub-Delivery"] = "9a1c0c1e-cc78-11e3-81ab-4c9367dc0958"  # another delivery
            assert await _post(client, "/v1/github", push, **headers) == (202, {"accepted": 1})
            assert [e.tags["delivery"] for e in sink.events] == ["72d3162e-cc78-11e3-81ab-4c9367dc0958",
                                                                 "9a1c0c1e-cc78-11e3-81ab-4c9367dc0958"]
    asyncio.run(main())


def test_alertmanager__a_repeat_of_an_unchanged_group_is_a_duplicate_a_changed_group_is_not() -> None:
    group = data_json("alertmanager/v4_group.json")

    async def main() -> None:
        async with _client() as (client, sink):
            assert await _post(client, "/v1/alertmanager", group) == (202, {"accepted": 3})
            repeat = copy.deepcopy(group)
            repeat["alerts"][0]["annotations"]["description"] = "still failing after 4 hours"
            assert await _post(client, "/v1/alertmanager", repeat) == (202, {"accepted": 3, "duplicate": True})
            changed = copy.deepcopy(group)
            changed["alerts"][0].update(status="resolved", endsAt="2024-03-04T11:00:00Z")
            assert await _post(client, "/v1/alertmanager", changed) == (202, {"accepted": 3})
            assert len(sink.events) == 6
    asyncio.run(main())


class _FailOnceSink(MemorySink):
    """The bus is unavailable for the first event, then takes everything."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        if not self.failed:
            self.failed = True
            raise SinkUnavailable("the producer queue is full")
        super().send(event, on_delivery=on_delivery)


def test_a_delivery_that_failed__is_produced_by_its_retry() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger()
        async with _client(_FailOnceSink(), ledger=ledger) as (client, sink):
            status, _ = await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k"})
            assert status == 503
            assert await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k"}) == (202, {"accepted": 1})
            assert await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k"}) == (
                202, {"accepted": 1, "duplicate": True})
            assert len(sink.events) == 1
            assert [r.state for r in ledger.records] == ["claimed", "released", "claimed", "accepted"]
    asyncio.run(main())


def test_dedup_off__every_delivery_produces() -> None:
    async def main() -> None:
        async with _client(dedup_window_s=0) as (client, sink):
            for _ in range(2):
                assert await _post(client, "/v1/events", EVENT, **{"Idempotency-Key": "k"}) == (202, {"accepted": 1})
            assert len(sink.events) == 2
    asyncio.run(main())


def test_a_flood_of_bad_bodies__writes_the_burst_and_one_summary_of_the_rest() -> None:
    sink = MemorySink()
    now_ms = 1_700_000_000_000
    gate = DeadLetterGate(sink, DeadLetterLimits(burst=3, rate_per_s=1), clock_ms=lambda: now_ms)
    metrics = BridgeMetrics()

    async def main() -> None:
        async with _client(sink, dead_letters=gate, metrics=metrics) as (client, _):
            for n in range(20):
                status, _ = await _post(client, "/v1/events", f"{{not json {n}".encode())
                assert status == 400  # every one is still answered and counted
            assert await _post(client, "/v1/events", EVENT) == (202, {"accepted": 1})  # valid input unaffected
            metrics_text = await (await client.get("/metrics")).text()
            assert 'vigil_dead_letters_summarised_total{reason="invalid",source="http/events"} 17.0' in metrics_text
        # Stopping writes the summary of what is still held back.

    asyncio.run(main())
    assert metrics.rejected_count("events", "invalid") == 20
    written = [d for d in sink.dead_letters if d.reason != SUMMARY_REASON]
    (summary,) = [d for d in sink.dead_letters if d.reason == SUMMARY_REASON]
    assert [d.value for d in written] == [b"{not json 0", b"{not json 1", b"{not json 2"]
    assert json.loads(summary.value)["summarised"] == 17
    assert summary.source == "http/events" and "17 record(s) from http/events with invalid" in summary.detail
    assert len(sink.events) == 1
