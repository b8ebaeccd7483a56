"""State expiry decisions (app.runtime.expiry): pure, event time only."""

from __future__ import annotations

import pytest

from app.runtime.expiry import MAX_BUCKET_MS, ExpiryMetrics, Verdict, check_at_ms, decide, expiry_bucket_ms, moves_check

H = 3_600_000
D = 24 * H
WEEK = 7 * D


@pytest.mark.parametrize(("retention_ms", "bucket_ms"), [(WEEK, MAX_BUCKET_MS), (8 * H, H), (80_000, 10_000),
                                                         (2_000, 1_000)])
def test_bucket__an_eighth_of_the_retention_between_a_second_and_an_hour(retention_ms: int, bucket_ms: int) -> None:
    assert expiry_bucket_ms(retention_ms) == bucket_ms


def test_check__at_the_end_of_the_activity_bucket_plus_retention() -> None:
    assert check_at_ms(0, WEEK) == H + WEEK
    assert check_at_ms(H - 1, WEEK) == H + WEEK
    assert check_at_ms(H, WEEK) == 2 * H + WEEK
    for active in (0, 1, 17 * 60_000, H - 1):
        assert check_at_ms(active, WEEK) >= active + WEEK  # never before the retention passed


def test_moves_check__new_state_and_a_later_bucket_only() -> None:
    assert moves_check(None, 5, WEEK)
    assert not moves_check(10, 20, WEEK)  # same hour: the armed check stays valid
    assert moves_check(H - 1, H, WEEK)
    assert not moves_check(H, H - 1, WEEK)  # an older event changes nothing
    assert not moves_check(None, 5, 0)  # expiry off: no timers at all


def test_decide__quiet_for_the_retention_expires() -> None:
    assert decide(active_ms=0, watermark_ms=WEEK, retention_ms=WEEK) == Verdict(True)
    assert decide(active_ms=0, watermark_ms=WEEK + H, retention_ms=WEEK).expire


def test_decide__active_again_is_checked_at_its_new_bucket() -> None:
    verdict = decide(active_ms=5 * H + 1, watermark_ms=WEEK + H, retention_ms=WEEK)
    assert verdict == Verdict(False, 6 * H + WEEK)


def test_decide__a_pending_absence_holds_until_after_it_is_due() -> None:
    verdict = decide(active_ms=0, watermark_ms=WEEK + H, retention_ms=WEEK, held_until_ms=2 * WEEK)
    assert verdict == Verdict(False, 2 * WEEK + H)
    # a deadline already passed by event time (its alert not fired yet): look again a bucket later
    verdict = decide(active_ms=0, watermark_ms=WEEK + H, retention_ms=WEEK, held_until_ms=D)
    assert verdict == Verdict(False, WEEK + 2 * H)


@pytest.mark.parametrize("retention_ms", [0, -1])
def test_decide__retention_zero_keeps_forever_and_never_checks_again(retention_ms: int) -> None:
    assert decide(active_ms=0, watermark_ms=10 * WEEK, retention_ms=retention_ms) == Verdict(False, None)


def test_decide__same_inputs_same_verdict() -> None:
    args = {"active_ms": 123_456, "watermark_ms": WEEK + 2 * H, "retention_ms": WEEK, "held_until_ms": None}
    assert {decide(**args) for _ in range(3)} == {decide(**args)}  # type: ignore[arg-type]


def test_metrics__counted_per_kind_as_vigil_state_expired_total() -> None:
    metrics = ExpiryMetrics()
    metrics.count("identity", 3)
    metrics.count("throttle")
    assert metrics.counts == {"identity": 3, "throttle": 1}
    assert metrics.registry.get_sample_value("vigil_state_expired_total", {"kind": "identity"}) == 3
