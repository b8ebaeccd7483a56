"""Retrying transient failures: full-jitter exponential backoff, and a retry loop built on it.

Full jitter (each delay uniform in [0, min(cap, initial * 2**attempt)]), as confluent-kafka's schema
registry client and the AWS architecture note on backoff do: many clients retrying after one
outage spread out instead of arriving together. Pure logic; the sleep and the random source are
passed in so tests decide them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["Backoff", "RetryGaveUp", "retry_call"]

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays for successive retries of one operation; `reset()` after a success."""

    initial_s: float = 0.1
    max_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    #: failures since the last reset
    attempt: int = 0

    def next_delay_s(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        ceiling = min(self.max_s, self.initial_s * (2 ** min(self.attempt, 62)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class RetryGaveUp(Exception):
    """A retriable failure went on past the deadline; `__cause__` is the last failure."""


def retry_call(fn: Callable[[], T], *, is_retriable: Callable[[BaseException], bool], deadline_s: float | None,
               backoff: Backoff | None = None, sleep: Callable[[float], None] = time.sleep,
               monotonic: Callable[[], float] = time.monotonic,
               on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """Call `fn` until it returns. A failure that is not retriable is raised at once; a retriable
    one is retried after a backoff delay, until `deadline_s` seconds have passed (None: forever),
    then raised as RetryGaveUp from the last failure. `on_retry(exc, delay_s)` is told each retry."""
    backoff = backoff or Backoff()
    give_up_at = None if deadline_s is None else monotonic() + deadline_s
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            delay_s = backoff.next_delay_s()
            if give_up_at is not None and monotonic() + delay_s > give_up_at:
                raise RetryGaveUp(f"still failing after {deadline_s:g} s: {exc}") from exc
            if on_retry is not None:
                on_retry(exc, delay_s)
            sleep(delay_s)
