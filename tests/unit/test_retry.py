"""Full-jitter backoff and the retry loop (pure: sleep, clock and randomness are passed in)."""

from __future__ import annotations

import random

import pytest

from app.retry import Backoff, RetryGaveUp, retry_call


class _Transient(Exception):
    pass


def test_backoff__delays_stay_under_the_growing_ceiling_and_the_cap() -> None:
    b = Backoff(initial_s=0.1, max_s=1.0, rng=random.Random(7))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for ceiling in ceilings:
        assert 0.0 <= b.next_delay_s() <= ceiling
    b.reset()
    assert b.attempt == 0 and b.next_delay_s() <= 0.1


def test_backoff__jitter_spreads_clients() -> None:
    delays = {Backoff(initial_s=1.0, max_s=1.0, rng=random.Random(seed)).next_delay_s() for seed in range(20)}
    assert len(delays) == 20


def test_retry_call__retries_transient_failures_until_success() -> None:
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _Transient("down")
        return "ok"

    assert retry_call(flaky, is_retriable=lambda e: isinstance(e, _Transient), deadline_s=None,
                      sleep=slept.append) == "ok"
    assert len(calls) == 4 and len(slept) == 3


def test_retry_call__raises_a_permanent_failure_at_once() -> None:
    def bad() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        retry_call(bad, is_retriable=lambda e: isinstance(e, _Transient), deadline_s=None, sleep=lambda s: None)


def test_retry_call__gives_up_after_the_deadline_with_the_last_failure() -> None:
    now = [0.0]

    def always() -> None:
        raise _Transient("still down")

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(RetryGaveUp) as info:
        retry_call(always, is_retriable=lambda e: True, deadline_s=5.0, backoff=Backoff(initial_s=1, max_s=1),
                   sleep=sleep, monotonic=lambda: now[0])
    assert isinstance(info.value.__cause__, _Transient)
    assert now[0] <= 5.0
