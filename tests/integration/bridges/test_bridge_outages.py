"""Bridges, the beacon publisher and `events tail` against a private broker and registry that the
tests stop and start (the `outage` fixture): an outage delays events, it never loses them, never
dead-letters them, and never answers a sender with a 4xx."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from confluent_kafka import TopicPartition

from app.beacons.assembly import open_publisher
from app.beacons.config import BeaconsConfig
from app.bridges.config import BridgeConfig
from app.bridges.http import make_http_app
from app.bridges.kafka_sink import KafkaEventSink, make_sink
from app.bridges.syslog import SOURCE, SyslogServer
from app.bus.clients import make_consumer
from app.config import Settings
from app.model.events import Event
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.sdk import Emitter, TailedEvent, tail_events
from tests.conftest import wait_until
from tests.integration.bridges.conftest import register_deploy_type
from tests.integration.outage import OutageStack

from .conftest import LoopThread, read_dead_letters, read_events

JSON = {"Content-Type": "application/json"}
HOST_BEACONS_OFF = {"load": False, "cpu": False, "memory": False, "disk": False, "net": False, "heartbeat": False}


def _settings(outage: OutageStack, tmp_path: Path) -> Settings:
    """The stack's settings on fresh topics; registry calls give up after 1 s (the tests wait on
    the callers' own retries, not the client's)."""
    return outage.isolated(tmp_path / "state").model_copy(update={"schema_registry_retry_deadline_s": 1.0})


@contextmanager
def _http_bridge(sink: KafkaEventSink, **config: Any) -> Iterator[str]:
    """The HTTP bridge on a free loopback port; yields its base URL."""
    loop = LoopThread()
    runner = web.AppRunner(make_http_app(sink, BridgeConfig(**config)), access_log=None)
    try:
        loop.run(runner.setup())
        loop.run(web.TCPSite(runner, "127.0.0.1", 0).start())
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        loop.run(runner.cleanup(), timeout_s=120)
        loop.close()


def _post(url: str, body: Any) -> httpx.Response:
    return httpx.post(url, content=json.dumps(body).encode(), headers=JSON, timeout=60)


def test_http_ingest_while_the_registry_is_stopped__503_with_retry_after_then_accepted(
        outage: OutageStack, tmp_path: Path) -> None:
    settings = _settings(outage, tmp_path)
    deploy = register_deploy_type(settings)
    typed = {"type": deploy, "subject": "api", "name": "deploy", "version": "1.2.3"}
    sink = make_sink(settings)  # registers vigil.Event: its id is known from now on
    try:
        with _http_bridge(sink, retry_after_s=7) as url:
            outage.stop_registry()
            response = _post(f"{url}/v1/events", [typed])
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "7"
            assert "schema registry" in response.json()["error"]
            # Plain events need no registry call once vigil.Event's id is known.
            plain = _post(f"{url}/v1/events", {"subject": "web-1", "name": "load", "id": "plain-1"})
            assert (plain.status_code, plain.json()) == (202, {"accepted": 1})
            health = httpx.get(f"{url}/healthz", timeout=10)
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert "schema registry" in health.json()["problems"][0]

            outage.start_registry()
            response = _post(f"{url}/v1/events", [typed])  # the sender's retry
            assert (response.status_code, response.json()) == (202, {"accepted": 1}), response.text
            assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok", "problems": []}
    finally:
        sink.close()
    events = read_events(settings, expect=2)
    assert sorted((kind, record.get("id") or record["version"]) for kind, record in events) == sorted(
        [(deploy, "1.2.3"), ("vigil.Event", "plain-1")])
    assert read_dead_letters(settings, expect=0) == []


def test_bridges_and_beacons_across_a_kafka_restart__every_event_arrives_once_nothing_dead_lettered(
        outage: OutageStack, tmp_path: Path) -> None:
    settings = _settings(outage, tmp_path)
    subject = f"host-{uuid.uuid4().hex[:8]}"
    sink = make_sink(settings)
    loop = LoopThread()
    syslog = SyslogServer(sink, ["udp://127.0.0.1:0"], BridgeConfig(syslog_listen=["udp://127.0.0.1:0"]))
    loop.run(syslog.start())
    udp_port = syslog.bound[0].port
    beacons = BeaconsConfig.model_validate({
        "subject": subject, "spool": {"dir": str(tmp_path / "spool"), "delivery_timeout": "5s"},
        "beacons": HOST_BEACONS_OFF})
    publisher = open_publisher(beacons, settings)
    http_ids: list[str] = []
    unanswered: list[dict[str, Any]] = []  # got a 503: the sender sends them again
    syslog_texts: list[str] = []
    beacon_ids: list[str] = []

    def send_round(url: str, phase: str) -> None:
        for i in range(5):
            event = {"subject": subject, "name": f"http-{phase}", "id": f"http-{phase}-{i}"}
            http_ids.append(event["id"])
            response = _post(f"{url}/v1/events", event)
            if response.status_code != 202:
                assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), response.text
                unanswered.append(event)
            text = f"syslog-{phase}-{i}"
            syslog_texts.append(text)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(f"<13>Mar 19 10:00:00 h1 app: {text}".encode(), ("127.0.0.1", udp_port))
            beacon = Event(subject=subject, name=f"beacon-{phase}", id=f"beacon-{phase}-{i}")
            beacon_ids.append(beacon.id)
            publisher.publish(beacon)

    try:
        with _http_bridge(sink, delivery_timeout_s=2.0) as url:
            send_round(url, "before")
            assert unanswered == []
            outage.stop_kafka()
            send_round(url, "during")
            assert [e["id"] for e in unanswered] == [f"http-during-{i}" for i in range(5)]  # 503s, not 4xx
            outage.start_kafka()
            send_round(url, "after")

            def resend() -> bool:  # a sender with retries resends what got a 503
                unanswered[:] = [e for e in unanswered if _post(f"{url}/v1/events", e).status_code != 202]
                return not unanswered

            wait_until(resend, timeout_s=120, interval_s=1.0, message="every HTTP event to be accepted")
            wait_until(lambda: syslog.metrics.pending_count(SOURCE) == 0, timeout_s=120,
                       message="the syslog bridge to have resent what it kept")
            # Beacon events that timed out during the outage wait in the spool for its next round.
            with _EventIds(settings) as seen:
                wait_until(lambda: set(beacon_ids) <= seen.poll(), timeout_s=180, interval_s=0.5,
                           message="every beacon event on the events topic")
    finally:
        publisher.close(timeout_s=60)
        loop.run(syslog.stop(), timeout_s=120)
        loop.close()
        sink.close()

    assert publisher.left_in_spool == 0
    assert publisher.stats.delivered_direct < len(beacon_ids)  # some went through the spool
    expected = len(http_ids) + len(syslog_texts) + len(beacon_ids)
    records = [record for kind, record in read_events(settings, expect=expected) if kind == "vigil.Event"]
    by_id = {record["id"] for record in records}
    assert set(http_ids) <= by_id and set(beacon_ids) <= by_id  # a resent 503 may arrive twice: same id
    texts = [record["text"] for record in records if record["text"].startswith("syslog-")]
    assert sorted(texts) == sorted(syslog_texts)  # each exactly once
    assert read_dead_letters(settings, expect=0) == []


class _EventIds:
    """The ids on the events topic so far (a consumer from the beginning, kept across polls)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic("events")
        self.registry = RegistryClient.from_settings(settings)
        self.serde = AvroSerde(self.registry)
        self.consumer = make_consumer(settings, f"test-ids-{uuid.uuid4().hex[:8]}")
        partitions = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
        self.ids: set[str] = set()

    def poll(self) -> set[str]:
        for msg in self.consumer.consume(1000, timeout=0.2):
            if msg.error() is None:
                self.ids.add(str(self.serde.decode(msg.value()).get("id")))
        return self.ids

    def __enter__(self) -> _EventIds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()
        self.registry.close()


def test_events_tail_waits_for_the_registry_and_skips_nothing(outage: OutageStack, tmp_path: Path) -> None:
    settings = _settings(outage, tmp_path)
    subject = f"host-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    ids = [emitter.emit(subject=subject, name="load", wait=False) for _ in range(3)]
    emitter.close()
    outage.stop_registry()
    told: list[str] = []
    tailed: list[TailedEvent] = []

    def tail() -> None:
        tailed.extend(tail_events(settings, from_beginning=True, subject=subject, stop_after_idle_s=3,
                                  notify=told.append))

    reader = threading.Thread(target=tail, daemon=True)
    try:
        reader.start()
        wait_until(lambda: told, timeout_s=60, message="the tail to say that it waits for the registry")
        assert "schema registry is unavailable" in told[0] and tailed == []
    finally:
        outage.start_registry()
    reader.join(120)
    assert not reader.is_alive()
    assert [t.record["id"] for t in tailed] == ids
    assert "answers again" in told[-1]
