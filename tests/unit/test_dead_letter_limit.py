"""The dead-letter rate limit (app.dead_letter_limit): token buckets per (source, reason), summaries
of what was held back, the counter, and the limits from the settings (VIGIL_DLQ_*). Time is passed in."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.config import ConfigError, Settings, load_settings
from app.dead_letter_limit import (
    OTHER,
    SUMMARY_REASON,
    DeadLetterLimiter,
    DeadLetterLimits,
    Summary,
    dead_letter_limits,
)

T0 = 1_700_000_000_000


def _limiter(**limits: float) -> DeadLetterLimiter:
    return DeadLetterLimiter(DeadLetterLimits.model_validate(limits))


def test_a_flood_at_one_instant__writes_the_burst_and_holds_back_the_rest() -> None:
    limiter = _limiter(rate_per_s=10, burst=100)
    admitted = sum(limiter.admit("syslog/tcp", "not_utf8", T0) for _ in range(10_000))
    assert admitted == 100
    assert limiter.summarised("syslog/tcp", "not_utf8") == 9_900


def test_the_bucket_refills_at_the_rate__and_never_beyond_the_burst() -> None:
    limiter = _limiter(rate_per_s=10, burst=5)
    assert [limiter.admit("s", "r", T0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.admit("s", "r", T0 + 99) is False  # 0.99 of a token
    assert limiter.admit("s", "r", T0 + 100) is True  # one token after 100 ms at 10/s
    # An hour later the bucket holds the burst, not 36,000.
    later = T0 + 3_600_000
    assert sum(limiter.admit("s", "r", later) for _ in range(100)) == 5


def test_a_clock_stepping_back__refills_nothing() -> None:
    limiter = _limiter(rate_per_s=10, burst=1)
    assert limiter.admit("s", "r", T0 + 10_000)
    assert not limiter.admit("s", "r", T0)  # earlier than the last refill: no tokens from it
    assert not limiter.admit("s", "r", T0 + 10_050)
    assert limiter.admit("s", "r", T0 + 10_100)


def test_buckets_are_per_source_and_reason() -> None:
    limiter = _limiter(burst=2)
    for key in [("http/events", "invalid"), ("http/events", "too_large"), ("http/github", "invalid")]:
        assert [limiter.admit(*key, T0) for _ in range(3)] == [True, True, False]
    assert limiter.totals() == {("http/events", "invalid"): 1, ("http/events", "too_large"): 1,
                                ("http/github", "invalid"): 1}


def test_summaries__once_per_interval_and_each_held_back_record_in_exactly_one() -> None:
    limiter = _limiter(rate_per_s=1, burst=1, summary_interval_s=60)
    assert limiter.admit("syslog/udp", "oversized", T0)
    for offset_ms in range(0, 30_000, 10):  # 3,000 in 30 s: a token per second comes back (29 by the last)
        limiter.admit("syslog/udp", "oversized", T0 + 5 + offset_ms)
    held = limiter.summarised("syslog/udp", "oversized")
    assert held == 3_000 - 29
    assert limiter.due(T0 + 59_000) == []  # the first held-back one is not 60 s old yet
    (summary,) = limiter.due(T0 + 60_005)
    assert (summary.source, summary.reason, summary.count) == ("syslog/udp", "oversized", held)
    assert summary.first_ms == T0 + 5 and summary.last_ms <= T0 + 30_000
    assert limiter.due(T0 + 120_000) == []  # nothing held back since
    assert limiter.admit("syslog/udp", "oversized", T0 + 60_006)  # refilled (to the burst of 1)
    assert not limiter.admit("syslog/udp", "oversized", T0 + 60_007)
    assert limiter.due(T0 + 60_008) == []  # a new interval started with that one
    (last,) = limiter.due(T0 + 60_008, everything=True)  # e.g. when stopping
    assert last.count == 1
    assert limiter.summarised("syslog/udp", "oversized") == held + 1  # the counter never resets


def test_summary_record__says_what_was_summarised_from_where_and_when() -> None:
    summary = Summary("syslog/tcp", "not_utf8", 9_900, T0, T0 + 1_500, topic="events-dlq")
    body = json.loads(summary.value())
    assert body["summarised"] == 9_900
    assert (body["source"], body["reason"]) == ("syslog/tcp", "not_utf8")
    assert (body["from_ms"], body["to_ms"]) == (T0, T0 + 1_500)
    assert body["from"] == "2023-11-14T22:13:20.000Z" and body["to"] == "2023-11-14T22:13:21.500Z"
    assert summary.text().startswith("9900 record(s) from syslog/tcp with not_utf8 were summarised, not written, "
                                     "between 2023-11-14T22:13:20.000Z and 2023-11-14T22:13:21.500Z")
    headers = summary.headers()
    assert (headers["vigil.reason"], headers["vigil.summarised"], headers["vigil.summarised.reason"]) == (
        SUMMARY_REASON, "9900", "not_utf8")
    assert dict(summary.kafka_headers())["vigil.source"] == b"syslog/tcp"


def test_keys_beyond_max_keys__share_one_bucket() -> None:
    limiter = _limiter(burst=1, max_keys=2)
    assert limiter.admit("a", "r", T0) and limiter.admit("b", "r", T0)
    assert limiter.admit("c", "r", T0)  # the shared bucket's one token
    assert not limiter.admit("d", "r", T0)
    assert limiter.summarised(OTHER, OTHER) == 1


def test_counter__is_exposed_once_something_was_held_back() -> None:
    limiter = _limiter(burst=1)
    registry = CollectorRegistry()
    registry.register(limiter.collector())
    assert b"vigil_dead_letters_summarised" not in generate_latest(registry)
    for _ in range(4):
        limiter.admit("http/events", "invalid", T0)
    assert registry.get_sample_value("vigil_dead_letters_summarised_total",
                                     {"source": "http/events", "reason": "invalid"}) == 3


def test_limits__come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIGIL_DLQ_RATE_PER_S", "VIGIL_DLQ_BURST", "VIGIL_DLQ_SUMMARY_INTERVAL_S"):
        monkeypatch.delenv(name, raising=False)
    assert dead_letter_limits(Settings()) == DeadLetterLimits()
    monkeypatch.setenv("VIGIL_DLQ_RATE_PER_S", "0.5")
    monkeypatch.setenv("VIGIL_DLQ_BURST", "7")
    monkeypatch.setenv("VIGIL_DLQ_SUMMARY_INTERVAL_S", "5")
    limits = dead_letter_limits(load_settings())
    assert (limits.rate_per_s, limits.burst, limits.summary_interval_s) == (0.5, 7, 5)
    monkeypatch.setenv("VIGIL_DLQ_BURST", "0")
    with pytest.raises(ConfigError, match="dlq_burst"):
        load_settings()
    monkeypatch.setenv("VIGIL_DLQ_BURST", "7")
    monkeypatch.setenv("VIGIL_DLQ_RATE_PER_S", "fast")
    with pytest.raises(ConfigError, match="dlq_rate_per_s"):
        load_settings()
