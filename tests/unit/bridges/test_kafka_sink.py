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
from app.registry.client import RegistryError, RegistryUnavailable
from app.registry.memory import InMemorySchemaSource
from app.sdk import Emitter
from tests.conftest import free_port, wait_until
from tests.kafka_clients import open_clients

DEPLOY = ('{"type": "record", "name": "Deploy", "namespace": "acme", "fields": ['
          '{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},'
          '{"name": "time", "type": "long"}, {"name": "version", "type": "string"}]}')
NO_NAME = ('{"type": "record", "name": "Blob", "namespace": "acme", "fields": ['
           '{"name": "subject", "type": "string"}, {"name": "time", "type": "long"}]}')


@pytest.fixture
def registry() -> InMemorySchemaSource:
    """The in-memory registry (the real client's interface and errors; outages on demand)."""
    source = InMemorySchemaSource()
    source.register("acme.Deploy", DEPLOY)
    source.register("acme.Blob", NO_NAME)
    return source


@pytest.fixture
def sink(registry: InMemorySchemaSource) -> Iterator[KafkaEventSink]:
    """A sink whose Kafka is not there: records fail after half a second instead of five minutes."""
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"message.timeout.ms": 500})
    made = KafkaEventSink(Emitter(settings, registry=registry), schema_ttl_s=0.0, flush_timeout_s=5.0)
    yield made
    made.close()


def test_kafka_sink__implements_the_protocol(sink: KafkaEventSink) -> None:
    assert isinstance(sink, EventSink)


def test_make_sink__unreachable_registry_is_a_clear_error_at_start() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", schema_registry_url=f"http://127.0.0.1:{free_port()}",
                        schema_registry_retry_deadline_s=0.2)  # the client's retries are tested elsewhere
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


def test_send_typed__checks_against_the_latest_version(sink: KafkaEventSink,
                                                       registry: InMemorySchemaSource) -> None:
    record = {"subject": "api", "name": "deploy", "version": "1", "replicas": 3}
    with pytest.raises(SinkError, match="replicas"):
        sink.send_typed("acme.Deploy", record)
    registry.register("acme.Deploy", DEPLOY.replace(
        '{"name": "version", "type": "string"}',
        '{"name": "version", "type": "string"}, {"name": "replicas", "type": "int", "default": 1}'))
    sink.send_typed("acme.Deploy", record)  # schema_ttl_s=0: the new version is fetched at once


@pytest.mark.parametrize("outage", [
    RegistryUnavailable("cannot reach the schema registry at http://registry: refused"),
    RegistryError(503, 50003, "Error while forwarding the request to the leader"),
    RegistryError(429, 429, "Too many requests"),
], ids=["unreachable", "503", "429"])
def test_send_typed__keeps_using_a_known_schema_while_the_registry_is_away(
        sink: KafkaEventSink, registry: InMemorySchemaSource, outage: RegistryError) -> None:
    record = {"subject": "api", "name": "deploy", "version": "1"}
    sink.send_typed("acme.Deploy", record)
    sink.send(Event(subject="web-1", name="load"))  # registers vigil.Event (make_sink does it at start)
    registry.fail_with(outage)
    sink.send_typed("acme.Deploy", record)
    sink.send(Event(subject="web-1", name="load"))  # its schema id is known: no registry needed
    with pytest.raises(SinkUnavailable, match="cannot fetch the schema of acme.Other from the schema registry"):
        sink.send_typed("acme.Other", record)  # not the sender's fault: no SinkError (no 4xx, no dead letter)
    registry.recover()
    with pytest.raises(SinkError, match="no registered record type named 'acme.Other'"):
        sink.send_typed("acme.Other", record)


def test_send_typed__a_new_type_during_an_outage_is_unavailable_not_refused(
        sink: KafkaEventSink, registry: InMemorySchemaSource) -> None:
    registry.register("acme.Late", DEPLOY.replace('"Deploy"', '"Late"'))
    registry.fail_with(RegistryError(500, 50001, "Error in the backend data store"))
    with pytest.raises(SinkUnavailable, match="Error in the backend data store"):
        sink.send_typed("acme.Late", {"subject": "api", "name": "deploy", "version": "1"})


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


def test_close__drops_what_is_queued_tells_each_sender_and_lets_go_of_the_producer(
        registry: InMemorySchemaSource) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"log_level": 0})
    sink = KafkaEventSink(Emitter(settings, registry=registry))  # records would wait 5 minutes for Kafka
    reports: list[str | None] = []
    sink.send(Event(subject="web-1", name="load"), on_delivery=reports.append)
    sink.close()
    assert reports == ["delivery to events failed: Local: Purged in queue"]
    # Whoever still holds the closed sink (aiohttp caches its handlers) does not keep the producer.
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []
    with pytest.raises(SinkUnavailable, match="is closed"):
        sink.send(Event(subject="web-1", name="load"))
