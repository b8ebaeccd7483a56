"""When the worker's run loop commits (app.runtime.worker.commit_due)."""

from __future__ import annotations

import pytest

from app.runtime.worker import commit_due
from app.runtime.worker.options import poll_wait_s


@pytest.mark.parametrize(("since_commit_s", "got", "writing", "uncommitted", "due"), [
    (5.0, True, False, True, True),     # the interval passed while records flow
    (5.0, True, True, True, True),      # ... even while the previous commit is still being written
    (0.3, True, False, True, False),    # records flow, interval not reached
    (0.3, False, False, True, True),    # idle with something uncommitted: commit now
    (0.3, False, False, False, False),  # idle, nothing to commit
    (0.3, False, True, True, False),    # a short wait during a commit found nothing: not idle
])
def test_commit_due(since_commit_s: float, got: bool, writing: bool, uncommitted: bool, due: bool) -> None:
    assert commit_due(since_commit_s=since_commit_s, interval_s=5.0, got=got, writing=writing,
                      uncommitted=uncommitted) is due


def test_poll_wait__no_longer_than_until_the_next_wall_clock_timer() -> None:
    assert poll_wait_s(0.1, next_timer_ms=None, now_ms=1_000) == 0.1
    assert poll_wait_s(0.1, next_timer_ms=1_020, now_ms=1_000) == 0.02
    assert poll_wait_s(0.1, next_timer_ms=1_000, now_ms=1_000) == 0.0, "due now: take what is there, fire it"
    assert poll_wait_s(0.1, next_timer_ms=900, now_ms=1_000) == 0.0
    assert poll_wait_s(0.1, next_timer_ms=5_000, now_ms=1_000) == 0.1
