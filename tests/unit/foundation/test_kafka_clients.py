"""The session's guard against Kafka clients left open (tests/kafka_clients.py): what it reports,
and what it leaves alone. Clients point at a loopback port nobody listens on."""

from __future__ import annotations

import pytest

from app.bus.clients import make_admin, make_consumer, make_producer
from app.config import Settings
from tests.conftest import free_port
from tests.kafka_clients import fail_if_open, open_clients

QUIET = {"log_level": 0}  # nothing listens: librdkafka would print every refused connection


@pytest.fixture
def settings() -> Settings:
    return Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")


def test_an_open_consumer__is_reported_with_the_test_and_the_line_that_made_it(settings: Settings) -> None:
    consumer = make_consumer(settings, "left-open", **QUIET)
    try:
        with pytest.raises(pytest.fail.Exception) as failed:
            fail_if_open("in this test", bootstrap=settings.kafka_bootstrap)
        report = str(failed.value)
        assert report.startswith("1 Kafka client(s) still open in this test")
        assert (f"a consumer for {settings.kafka_bootstrap}, made during tests/unit/foundation/test_kafka_clients.py::"
                "test_an_open_consumer__is_reported_with_the_test_and_the_line_that_made_it (call)") in report
        assert "tests/unit/foundation/test_kafka_clients.py:" in report and "in test_an_open_consumer" in report
        fail_if_open("again", bootstrap=settings.kafka_bootstrap)  # reported once only
    finally:
        consumer.close()


def test_closed_consumers_and_dropped_producers_and_admins__are_not_open(settings: Settings) -> None:
    consumer = make_consumer(settings, "closed", **QUIET)
    consumer.close()
    make_producer(settings, **QUIET)  # the last reference goes at once: so does librdkafka's handle
    make_admin(settings, **QUIET)
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []
    fail_if_open("in this test", bootstrap=settings.kafka_bootstrap)


def test_a_producer_held_only_by_a_pending_delivery_callback__is_open_until_the_report_is_served(
        settings: Settings) -> None:
    def produce_and_forget() -> None:
        producer = make_producer(settings, **QUIET)
        box = [producer]
        producer.produce("t", b"x", on_delivery=lambda err, msg: box.clear())  # librdkafka holds the lambda

    produce_and_forget()
    (pinned,) = open_clients(bootstrap=settings.kafka_bootstrap)
    pinned.purge()
    pinned.flush(0)  # serves the purge report: the callback runs, and librdkafka lets go of it
    del pinned
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []
