"""Bridges against the session's real Kafka: a bridge runs on an event loop in a background thread
(the test talks to it over real sockets), and what it produced is read back from the events and
dead-letter topics of the test's own topic prefix (`isolated_settings`)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiohttp import web

from app.bridges.config import BridgeConfig
from app.bridges.http import make_http_app
from app.bridges.kafka_sink import KafkaEventSink, make_sink
from app.bridges.metrics import BridgeMetrics
from app.bridges.sink import DLQ_TOPIC
from app.bridges.syslog import SyslogServer
from app.config import Settings
from app.model.schemas import record_name_subject
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from tests.integration.runtime.kafka_helpers import read_topic

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop in a daemon thread; `run` executes a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bridge-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


@dataclass
class HttpBridgeHandle:
    url: str
    metrics: BridgeMetrics


@dataclass
class DeadLetterRecord:
    value: bytes
    headers: dict[str, str]


@pytest.fixture
def kafka_sink(isolated_settings: Settings) -> Iterator[KafkaEventSink]:
    """The Kafka sink on the test's own topics."""
    sink = make_sink(isolated_settings)
    yield sink
    sink.close()


@pytest.fixture
def bridge_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def start_http_bridge(kafka_sink: KafkaEventSink, bridge_loop: LoopThread) -> Iterator[Callable[..., HttpBridgeHandle]]:
    """Factory: serve the HTTP bridge (BridgeConfig fields as keywords) on a free loopback port."""
    runners: list[web.AppRunner] = []

    def start(**config: Any) -> HttpBridgeHandle:
        metrics = BridgeMetrics()
        runner = web.AppRunner(make_http_app(kafka_sink, BridgeConfig(**config), metrics=metrics), access_log=None)
        bridge_loop.run(runner.setup())
        runners.append(runner)
        bridge_loop.run(web.TCPSite(runner, "127.0.0.1", 0).start())
        host, port = runner.addresses[0][:2]
        return HttpBridgeHandle(f"http://{host}:{port}", metrics)

    yield start
    for runner in runners:
        bridge_loop.run(runner.cleanup())  # flushes the sink


@pytest.fixture
def start_syslog_bridge(kafka_sink: KafkaEventSink, bridge_loop: LoopThread) -> Iterator[Callable[..., SyslogServer]]:
    """Factory: a started SyslogServer on UDP and TCP loopback ports (BridgeConfig fields as keywords)."""
    servers: list[SyslogServer] = []

    def start(**config: Any) -> SyslogServer:
        listens = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
        server = SyslogServer(kafka_sink, listens, BridgeConfig(syslog_listen=listens, **config))
        bridge_loop.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        bridge_loop.run(server.stop())  # flushes the sink


def read_events(settings: Settings, *, expect: int) -> list[tuple[str, dict[str, Any]]]:
    """(record type, record) of everything on the test's events topic, once at least `expect`
    arrived and nothing more came for a moment (so extra records would be seen too)."""
    messages = read_topic(settings, settings.topic("events"), expect=expect, timeout_s=30)
    registry = RegistryClient.from_settings(settings)
    try:
        serde = AvroSerde(registry)
        return [serde.decode_typed(m.value(), topic=m.topic(), offset=m.offset()) for m in messages]
    finally:
        registry.close()


def read_dead_letters(settings: Settings, *, expect: int) -> list[DeadLetterRecord]:
    """Every record on the test's dead-letter topic, with its headers decoded."""
    messages = read_topic(settings, settings.topic(DLQ_TOPIC), expect=expect, timeout_s=30)
    return [DeadLetterRecord(m.value(), {k: v.decode() for k, v in m.headers() or []}) for m in messages]


def register_deploy_type(settings: Settings) -> str:
    """A custom event type with a `version` field, registered under a unique namespace (the registry
    is shared by the session); returns its full name."""
    fullname = f"t{uuid.uuid4().hex[:8]}.Deploy"
    namespace, name = fullname.split(".")
    schema = json.dumps({"type": "record", "name": name, "namespace": namespace, "fields": [
        {"name": "subject", "type": "string"}, {"name": "name", "type": "string"},
        {"name": "time", "type": "long"}, {"name": "version", "type": "string"}]})
    registry = RegistryClient.from_settings(settings)
    try:
        registry.register(record_name_subject(fullname), schema)
    finally:
        registry.close()
    return fullname
