"""Times on the command line: ISO-8601, relative, +DURATION after --from, now; ranges in order."""

from __future__ import annotations

import pytest

from app.backtest.times import TimeRange, TimeSpecError, parse_range, parse_time

NOW = 1_714_738_500_000  # 2024-05-03T12:15:00Z
H = 3_600_000


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-03T10:15:00Z", NOW - 2 * H),
    ("2024-05-03T10:15:00.123Z", NOW - 2 * H + 123),
    ("2024-05-03T12:15:00+02:00", NOW - 2 * H),
    ("2024-05-03T10:15:00", NOW - 2 * H),  # no zone: UTC
    ("2024-05-03", NOW - 12 * H - 15 * 60_000),
    ("-7d", NOW - 7 * 24 * H),
    ("2h", NOW - 2 * H),
    ("-2h30m", NOW - 2 * H - 30 * 60_000),
    ("now", NOW),
    ("NOW", NOW),
    ("1714731300000", NOW - 2 * H),
])
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


def test_parse_time__plus_counts_from_after() -> None:
    assert parse_time("+2h", now_ms=NOW, after_ms=NOW - 10 * H) == NOW - 8 * H


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "is not a time"),
    ("", "empty"),
    ("+2h", "only for --to"),
    ("2024-13-01T00:00:00Z", "is not a time"),
    ("-0s", "is not a time"),
])
def test_parse_time__errors_name_the_forms(text: str, message: str) -> None:
    with pytest.raises(TimeSpecError, match=message):
        parse_time(text, now_ms=NOW)


def test_parse_range__defaults_and_order() -> None:
    assert parse_range(None, None, now_ms=NOW) == TimeRange(NOW - H, NOW)
    assert parse_range("-7d", "+1d", now_ms=NOW) == TimeRange(NOW - 7 * 24 * H, NOW - 6 * 24 * H)


def test_parse_range__from_after_to_is_one_line() -> None:
    with pytest.raises(TimeSpecError) as info:
        parse_range("now", "-1h", now_ms=NOW)
    assert str(info.value) == "--from 2024-05-03T12:15:00.000Z is after --to 2024-05-03T11:15:00.000Z"
