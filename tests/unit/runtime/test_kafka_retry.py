"""KafkaRetry and BusState (app.runtime.worker.bus): what is retried, and that nothing retries a
call of a client that failed for good (a dead consumer answers a seek with _STATE for ever)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from app.runtime.worker.bus import BusState, KafkaRetry


def failing(*errors: KafkaError, then: str = "done") -> tuple[list[int], Callable[[], str]]:
    """A call that raises `errors` one after the other, then returns `then`; and its call count."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise KafkaException(errors[len(calls) - 1])
        return then

    return calls, call


def retry(bus: BusState) -> KafkaRetry:
    return KafkaRetry(bus, stopping=threading.Event(), max_backoff_s=0.01)


def test_transient_failures_are_retried_until_the_call_succeeds() -> None:
    bus = BusState()
    calls, call = failing(KafkaError(KafkaError._TRANSPORT), KafkaError(KafkaError.NOT_COORDINATOR))
    assert retry(bus)(call, "commit offsets") == "done"
    assert len(calls) == 3
    assert bus.down


@pytest.mark.parametrize("err", [KafkaError(KafkaError._FATAL, "Commit failed: Local: Fatal error"),
                                 KafkaError(KafkaError.FENCED_INSTANCE_ID),
                                 KafkaError(KafkaError._TRANSPORT, "t", fatal=True)])
def test_a_fatal_error_is_raised_at_once(err: KafkaError) -> None:
    calls, call = failing(err)
    with pytest.raises(KafkaException) as raised:
        retry(BusState())(call, "commit offsets", also_codes=frozenset({err.code()}))
    assert raised.value.args[0].code() == err.code()
    assert len(calls) == 1


def test_nothing_is_retried_once_a_clients_fatal_error_is_kept() -> None:
    """A seek refused with _STATE is retried (a fetcher starting), but not on a dead consumer."""
    state = KafkaError(KafkaError._STATE, "Failed to seek to offset 0: Local: Erroneous state")
    bus = BusState()
    calls, call = failing(state)
    assert retry(bus)(call, "seek", also_codes=frozenset({KafkaError._STATE})) == "done"
    assert len(calls) == 2

    bus.consumer_failed(KafkaError(KafkaError._FATAL, "fenced"))
    calls, call = failing(state, state, state)
    with pytest.raises(KafkaException):
        retry(bus)(call, "seek", also_codes=frozenset({KafkaError._STATE}))
    assert len(calls) == 1


def test_a_consumers_fatal_error_is_kept_even_without_the_fatal_flag() -> None:
    """A consumer reports its fatal error with code _FATAL and fatal() unset (confluent-kafka 2.12)."""
    bus = BusState()
    bus.on_consumer_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
    assert bus.consumer_fatal is None and bus.down
    first = KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced")
    bus.on_consumer_error(first)
    bus.consumer_failed(KafkaError(KafkaError._FATAL, "Commit failed: Local: Fatal error"))
    assert bus.consumer_fatal is first  # the first one says why
    assert bus.fatal is first and bus.producer_fatal is None
