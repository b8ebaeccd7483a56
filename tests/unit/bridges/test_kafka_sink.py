"""KafkaEventSink without a broker: start-up checks, schema checks of typed records against the
registered (latest) schema, and delivery failures reported per record and counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from app.bridges.kafka_sink import KafkaEventSink, make_sink
from app.bridges.sink import EventSink, SinkError, SinkUnavailable
from app.config import Settings
from app.model.events import Event
from app.registry.client import RegisteredSchema, RegistryError, RegistryUnavailable
from app.registry.memory import InMemorySchemaSource
from app.sdk import Emitter
from tests.conftest import free_port, wait_until

DEPLOY = ('{"type": "record", "name": "Deploy", "namespace": "acme", "fields": ['
          '{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},'
          '{"name": "time", "type": "long"}, {"name": "version", "type": "string"}]}')
NO_NAME = ('{"type": "record", "name": "Blob", "namespace": "acme", "fields": ['
           '{"name": "subject", "type": "string"}, {"name": "time", "type": "long"}]}')


class StubRegistry(InMemorySchemaSource):
    """The in-memory schema source plus the two registry calls the sink makes; can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.reachable = True
        self.lookups = 0

    def register(self, subject: str, schema: str) -> int:
        self._check()
        return super().register(subject, schema)

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        self._check()
        self.lookups += 1
        ids = self._subjects.get(subject)
        if not ids:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return RegisteredSchema(subject, len(ids), ids[-1], self.schema_by_id(ids[-1]))

    def close(self) -> None:
        pass

    def _check(self) -> None:
        if not self.reachable:
            raise RegistryUnavailable("cannot reach the schema registry at http://registry: refused")


@pytest.fixture
def registry() -> StubRegistry:
    stub = StubRegistry()
    stub.register("acme.Deploy", DEPLOY)
    stub.register("acme.Blob", NO_NAME)
    return stub


@pytest.fixture
def sink(registry: StubRegistry) -> Iterator[KafkaEventSink]:
    """A sink whose Kafka is not there: records fail after half a second instead of five minutes."""
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"message.timeout.ms": 500})
    made = KafkaEventSink(Emitter(settings, registry=registry), schema_ttl_s=0.0, flush_timeout_s=5.0)  # type: ignore[arg-type]
    yield made
    made.close()


def test_kafka_sink__implements_the_protocol(sink: KafkaEventSink) -> None:
    assert isinstance(sink, EventSink)


def test_make_sink__unreachable_registry_is_a_clear_error_at_start() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", schema_registry_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SinkUnavailable, match=r"cannot register vigil.Event: cannot reach the schema registry"):
        make_sink(settings)


def test_check_ready__unreachable_kafka_is_a_clear_error(sink: KafkaEventSink) -> None:
    with pytest.raises(SinkUnavailable, match="did not answer within 1s"):
        sink.check_ready(timeout_s=1)


@pytest.mark.parametrize(("type_name", "record", "field", "words"), [
    ("acme.Nope", {"subject": "api", "name": "deploy"}, "type", "no registered record type named 'acme.Nope'"),
    ("acme.Blob", {"subject": "api"}, "type", "lacks field(s) name"),
    ("acme.Deploy", {"subject": "api", "name": "deploy", "version": 7}, "version", "expected string"),
    ("acme.Deploy", {"subject": "api", "name": "deploy"}, "version", "missing"),
    ("acme.Deploy", {"subject": "api", "name": "deploy", "version": "1", "colour": "red"}, "colour",
     "is not a field of acme.Deploy"),
])
def test_send_typed__refuses_what_the_registered_schema_does_not_allow(
        sink: KafkaEventSink, type_name: str, record: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(SinkError) as caught:
        sink.send_typed(type_name, record)
    assert (caught.value.field, words in caught.value.message) == (field, True)


def test_send_typed__checks_against_the_latest_version(sink: KafkaEventSink, registry: StubRegistry) -> None:
    record = {"subject": "api", "name": "deploy", "version": "1", "replicas": 3}
    with pytest.raises(SinkError, match="replicas"):
        sink.send_typed("acme.Deploy", record)
    registry.register("acme.Deploy", DEPLOY.replace(
        '{"name": "version", "type": "string"}',
        '{"name": "version", "type": "string"}, {"name": "replicas", "type": "int", "default": 1}'))
    sink.send_typed("acme.Deploy", record)  # schema_ttl_s=0: the new version is fetched at once


def test_send_typed__keeps_using_a_known_schema_while_the_registry_is_away(
        sink: KafkaEventSink, registry: StubRegistry) -> None:
    record = {"subject": "api", "name": "deploy", "version": "1"}
    sink.send_typed("acme.Deploy", record)
    registry.reachable = False
    sink.send_typed("acme.Deploy", record)
    with pytest.raises(SinkUnavailable, match="cannot reach the schema registry"):
        sink.send_typed("acme.Other", record)  # not the sender's fault: no SinkError


def test_undeliverable_records__are_reported_per_record_counted_and_fail_the_flush(sink: KafkaEventSink) -> None:
    reports: list[str | None] = []
    reported = threading.Event()

    def on_delivery(error: str | None) -> None:
        reports.append(error)
        reported.set()

    sink.send(Event(subject="web-1", name="load"), on_delivery=on_delivery)
    sink.dead_letter("syslog/udp", "not_utf8", b"\xff" * 10, detail="not UTF-8")  # never raises
    assert reported.wait(30), "no delivery report within 30s"
    assert reports[0] is not None and "delivery to events failed" in reports[0]
    wait_until(lambda: sink.failed == 2, timeout_s=30, message="both records counted as failed")
    sink.flush()  # nothing is queued any more, and those failures were reported already

    sink.send(Event(subject="web-1", name="load"))
    with pytest.raises(SinkUnavailable, match=r"could not be delivered|not acknowledged"):
        sink.flush()
