"""Deliveries are deduplicated on the real Kafka (issue 18.4): HTTP bridge replicas, each with its own
sink and its own delivery ledger on the shared `deliveries` topic, answer a redelivery without
producing again: on another replica, after a restart, and when two replicas get it at once."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from app.bridges.config import BridgeConfig
from app.bridges.http import make_http_app
from app.bridges.kafka_ledger import DELIVERIES_TOPIC, KafkaDeliveryLedger
from app.bridges.kafka_sink import KafkaEventSink, make_sink
from app.bridges.metrics import BridgeMetrics
from app.config import Settings
from tests.integration.runtime.kafka_helpers import read_topic
from tests.unit.bridges.support import data_bytes, data_json

from .conftest import LoopThread, read_events

JSON = {"Content-Type": "application/json"}
DUPLICATE = "duplicate"


@dataclass
class Replica:
    """One HTTP bridge: its own sink, ledger and port (as a separate process would have)."""

    url: str
    metrics: BridgeMetrics
    ledger: KafkaDeliveryLedger
    sink: KafkaEventSink
    runner: web.AppRunner
    loop: LoopThread
    stopped: bool = False

    def post(self, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(f"{self.url}{path}", content=data, headers={**JSON, **headers}, timeout=60)
        return response.status_code, response.json()

    def stop(self) -> None:
        """Stop serving and flush, as a bridge stopping for a restart does."""
        if self.stopped:
            return
        self.stopped = True
        self.loop.run(self.runner.cleanup())
        self.ledger.close()
        self.sink.close()


@pytest.fixture
def start_replica(isolated_settings: Settings, bridge_loop: LoopThread) -> Iterator[Callable[[], Replica]]:
    """Factory: a started HTTP bridge replica on a free loopback port."""
    replicas: list[Replica] = []

    def start() -> Replica:
        config = BridgeConfig(dedup_window_s=3600)
        ledger = KafkaDeliveryLedger(isolated_settings, window_s=config.dedup_window_s, lease_s=config.dedup_lease,
                                     wait_s=config.delivery_timeout_s)
        ledger.start()  # reads what the topic holds of the window before serving
        sink = make_sink(isolated_settings)
        metrics = BridgeMetrics()
        runner = web.AppRunner(make_http_app(sink, config, metrics=metrics, ledger=ledger), access_log=None)
        bridge_loop.run(runner.setup())
        bridge_loop.run(web.TCPSite(runner, "127.0.0.1", 0).start())
        host, port = runner.addresses[0][:2]
        replica = Replica(f"http://{host}:{port}", metrics, ledger, sink, runner, bridge_loop)
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        replica.stop()


def _ledger_states(settings: Settings, expect: int) -> list[tuple[str, str]]:
    records = read_topic(settings, settings.topic(DELIVERIES_TOPIC), expect=expect, timeout_s=30)
    return [(json.loads(m.value())["key"].split("/")[0], json.loads(m.value())["state"]) for m in records]


def test_github_and_idempotency_key__one_event_across_replicas_and_a_restart(
        isolated_settings: Settings, start_replica: Callable[[], Replica]) -> None:
    a, b = start_replica(), start_replica()
    push = data_bytes("github/push.json")
    github = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    events = [{"subject": "web-1", "name": "deploy", "kind": "ARCHIVE", "text": "v42"},
              {"subject": "web-2", "name": "deploy", "kind": "ARCHIVE", "text": "v42"}]
    key = {"Idempotency-Key": "deploy-v42"}

    assert a.post("/v1/github", push, **github) == (202, {"accepted": 1})
    assert a.post("/v1/events", events, **key) == (202, {"accepted": 2})
    # GitHub's "Redeliver" and the client's retry reach the other replica.
    assert b.post("/v1/github", push, **github) == (202, {"accepted": 1, DUPLICATE: True})
    assert b.post("/v1/events", events, **key) == (202, {"accepted": 2, DUPLICATE: True})
    status, body = b.post("/v1/events", [{**events[0], "text": "v43"}], **key)
    assert (status, body["field"]) == (422, "Idempotency-Key")

    a.stop()
    b.stop()
    c = start_replica()  # a restarted bridge: a new ledger that read the topic
    assert c.post("/v1/github", push, **github) == (202, {"accepted": 1, DUPLICATE: True})
    assert c.post("/v1/events", events, **key) == (202, {"accepted": 2, DUPLICATE: True})
    assert c.post("/v1/events", events, **{"Idempotency-Key": "deploy-v43"}) == (202, {"accepted": 2})

    produced = read_events(isolated_settings, expect=5)
    assert len(produced) == 5  # 1 push + 2 events + 2 under the new key, nothing more
    assert sorted(r["name"] for _, r in produced) == ["deploy"] * 4 + ["push"]
    ids = [r["id"] for _, r in produced if r["name"] == "deploy"]
    assert len(set(ids)) == 4  # ids derived from each key and position
    assert (b.metrics.duplicate_count("github"), b.metrics.duplicate_count("events")) == (1, 1)
    assert (c.metrics.duplicate_count("github"), c.metrics.duplicate_count("events")) == (1, 1)
    # The ledger: two claims accepted by A, the 422 claimed nothing, C's new key claimed and accepted.
    assert sorted(_ledger_states(isolated_settings, expect=6)) == sorted(
        [("github", "claimed"), ("github", "accepted"), ("events", "claimed"), ("events", "accepted"),
         ("events", "claimed"), ("events", "accepted")])


def test_alertmanager__a_resent_group_is_one_set_of_events_a_changed_group_another(
        isolated_settings: Settings, start_replica: Callable[[], Replica]) -> None:
    a, b = start_replica(), start_replica()
    group = data_json("alertmanager/v4_group.json")
    repeat = copy.deepcopy(group)  # the repeat interval's resend: same alerts, annotations may differ
    repeat["alerts"][0]["annotations"]["description"] = "still failing"
    changed = copy.deepcopy(group)
    changed["alerts"][0].update(status="resolved", endsAt="2024-03-04T11:00:00Z")

    assert a.post("/v1/alertmanager", group) == (202, {"accepted": 3})
    assert b.post("/v1/alertmanager", repeat) == (202, {"accepted": 3, DUPLICATE: True})
    a.stop()
    c = start_replica()
    assert c.post("/v1/alertmanager", repeat) == (202, {"accepted": 3, DUPLICATE: True})
    assert b.post("/v1/alertmanager", changed) == (202, {"accepted": 3})
    assert c.post("/v1/alertmanager", changed) == (202, {"accepted": 3, DUPLICATE: True})

    produced = [r for _, r in read_events(isolated_settings, expect=6)]
    assert len(produced) == 6
    first = [r for r in produced if r["subject"] == "https://shop.example.org"]
    assert sorted(r["severity"] for r in first) == [0, 2]  # firing, then resolved: once each


def test_two_replicas_getting_the_same_delivery_at_once__produce_it_once(
        isolated_settings: Settings, start_replica: Callable[[], Replica]) -> None:
    """The race the ledger's claims close: 8 copies of each of 5 deliveries sent at the same moment,
    alternately to two replicas; each delivery is produced by exactly one request."""
    a, b = start_replica(), start_replica()
    answers: list[tuple[str, int, dict[str, Any]]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def send(delivery: int, copy_number: int) -> None:
        replica = a if copy_number % 2 else b
        body = [{"subject": f"host-{delivery}", "name": "deploy", "kind": "ARCHIVE"}]
        barrier.wait(60)
        status, answer = replica.post("/v1/events", body, **{"Idempotency-Key": f"race-{delivery}"})
        with lock:
            answers.append((f"race-{delivery}", status, answer))

    threads = [threading.Thread(target=send, args=(d, n)) for d in range(5) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert sorted(status for _, status, _ in answers) == [202] * 40
    for delivery in range(5):
        mine = [answer for key, _, answer in answers if key == f"race-{delivery}"]
        assert sorted(mine, key=lambda x: DUPLICATE in x) == [{"accepted": 1}] + [{"accepted": 1, DUPLICATE: True}] * 7
    produced = [r for _, r in read_events(isolated_settings, expect=5)]
    assert sorted(r["subject"] for r in produced) == [f"host-{d}" for d in range(5)]
    assert a.metrics.duplicate_count("events") + b.metrics.duplicate_count("events") == 35
