"""Emitter.close without a broker: it waits as long as it is told, then lets go of its producer
even when records are still queued (librdkafka holds their delivery callbacks, and so the emitter)."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.registry.memory import InMemorySchemaSource
from app.sdk import EmitError, Emitter
from tests.conftest import free_port
from tests.kafka_clients import open_clients


def test_close__drops_what_kafka_did_not_take_and_lets_go_of_the_producer() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"log_level": 0})
    emitter = Emitter(settings, registry=InMemorySchemaSource())
    emitter.emit(subject="web-1", name="load", wait=False)
    with pytest.raises(EmitError, match=r"1 event\(s\) not acknowledged"):
        emitter.close(timeout_s=0.1)
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []  # though the emitter is still held here
    with pytest.raises(EmitError, match="is closed"):
        emitter.emit(subject="web-1", name="load")
    emitter.close()  # a second close does nothing


def test_release__says_how_many_records_it_dropped_and_tells_their_callbacks() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_config={"log_level": 0})
    emitter = Emitter(settings, registry=InMemorySchemaSource())
    told: list[str | None] = []
    for _ in range(2):
        emitter.emit(subject="web-1", name="load", wait=False,
                     on_delivery=lambda err, msg: told.append(None if err is None else err.str()))
    assert emitter.release() == 2
    assert told == ["Local: Purged in queue"] * 2
    assert open_clients(bootstrap=settings.kafka_bootstrap) == []
    assert emitter.release() == 0
