"""take_available: what a worker's poll returns, without waiting out a timeout it does not need."""

from __future__ import annotations

from typing import Any

from app.bus.clients import take_available


class QueuedConsumer:
    """A stand-in for confluent_kafka.Consumer.consume: returns from `queued` what is there, and
    `arriving` (records that come in during a wait) only to a call that waits."""

    def __init__(self, queued: list[str], arriving: list[str] | None = None) -> None:
        self.queued = queued
        self.arriving = arriving or []
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append((num_messages, timeout))
        if timeout > 0 and not self.queued:
            self.queued, self.arriving = self.arriving, []
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_queued_records_are_taken_without_waiting() -> None:
    consumer = QueuedConsumer(["a", "b", "c"])
    assert take_available(consumer, 2, 0.1) == ["a", "b"]  # type: ignore[arg-type]
    assert consumer.calls == [(2, 0)]


def test_with_nothing_queued_it_waits_for_one_record_then_takes_what_came_with_it() -> None:
    consumer = QueuedConsumer([], arriving=["a", "b", "c"])
    assert take_available(consumer, 10, 0.1) == ["a", "b", "c"]  # type: ignore[arg-type]
    # the waiting call asks for one record, so it returns when that one arrives (consume(n, t)
    # returns only with n records or after t)
    assert consumer.calls == [(10, 0), (1, 0.1), (9, 0)]


def test_idle_returns_empty_after_one_wait() -> None:
    consumer = QueuedConsumer([])
    assert take_available(consumer, 10, 0.1) == []  # type: ignore[arg-type]
    assert consumer.calls == [(10, 0), (1, 0.1)]


def test_zero_wait_never_blocks() -> None:
    consumer = QueuedConsumer([], arriving=["a"])
    assert take_available(consumer, 10, 0) == []  # type: ignore[arg-type]
    assert consumer.calls == [(10, 0)]


def test_a_batch_of_one_is_not_topped_up() -> None:
    consumer = QueuedConsumer([], arriving=["a", "b"])
    assert take_available(consumer, 1, 0.1) == ["a"]  # type: ignore[arg-type]
    assert consumer.calls == [(1, 0), (1, 0.1)]
