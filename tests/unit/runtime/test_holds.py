"""Partitions held back while the schema registry cannot answer (app.runtime.worker.holds)."""

from __future__ import annotations

import random

from app.retry import Backoff
from app.runtime.worker.holds import Holds


def make() -> Holds:
    return Holds(Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(3)))


def test_hold__retry_time_comes_from_the_backoff_and_reasons_name_the_partitions() -> None:
    holds = make()
    h = holds.hold(("events", 2), 41, "registry down", now_s=100.0)
    assert 100.0 <= h.retry_at_s <= 101.0 and h.offset == 41
    holds.hold(("events", 0), 7, "registry down", now_s=100.0)
    assert holds.reasons() == ["registry down: events[0]@7, events[2]@41"]
    assert holds and holds.total == 2


def test_due__moves_ripe_holds_to_retrying_and_keeps_the_others() -> None:
    holds = make()
    a = holds.hold(("events", 0), 1, "down", now_s=0.0)
    holds.held[("events", 1)] = type(a)(5, "down", retry_at_s=50.0)
    assert holds.due(now_s=a.retry_at_s) == [("events", 0)]
    assert ("events", 0) in holds.retrying and ("events", 1) in holds.held
    assert holds.reasons() == ["down: events[0] (retrying), events[1]@5"]


def test_passed__clears_the_retry_and_resets_the_backoff_once_nothing_is_held() -> None:
    holds = make()
    holds.hold(("events", 0), 1, "down", now_s=0.0)
    holds.hold(("events", 0), 1, "down", now_s=0.0)  # failed again: the backoff grows
    assert holds.backoff.attempt == 2
    holds.due(now_s=1e9)
    holds.passed(("events", 0))
    assert not holds and holds.backoff.attempt == 0


def test_passed__a_partition_that_was_not_held_changes_nothing() -> None:
    holds = make()
    holds.hold(("events", 0), 1, "down", now_s=0.0)
    holds.passed(("events", 3))
    assert holds.held and holds.backoff.attempt == 1


def test_forget__revoked_partitions_lose_their_holds() -> None:
    holds = make()
    holds.hold(("events", 0), 1, "down", now_s=0.0)
    holds.hold(("events", 1), 1, "down", now_s=0.0)
    holds.due(now_s=1e9)
    holds.forget([("events", 0), ("events", 1)])
    assert not holds and holds.reasons() == [] and holds.backoff.attempt == 0
