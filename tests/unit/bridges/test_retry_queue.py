"""RetryQueue: bounded FIFO that drops its oldest items, and takes back a failed resend first."""

from __future__ import annotations

import pytest

from app.bridges.retry_queue import RetryQueue


def test_fifo_with_the_oldest_dropped_past_the_bound() -> None:
    queue: RetryQueue[int] = RetryQueue(2)
    assert [queue.push(i) for i in (1, 2, 3)] == [0, 0, 1]
    assert len(queue) == 2
    assert [queue.pop(), queue.pop(), queue.pop()] == [2, 3, None]


def test_push_front__puts_a_failed_resend_back_first_unless_full() -> None:
    queue: RetryQueue[str] = RetryQueue(2)
    queue.push("a")
    queue.push("b")
    first = queue.pop()
    assert first == "a" and queue.push_front(first) == 0
    assert queue.pop() == "a"
    queue.push("c")  # full again while "a" was out
    assert queue.push_front("a") == 1  # the oldest is the one dropped
    assert [queue.pop(), queue.pop()] == ["b", "c"]


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryQueue(0)
