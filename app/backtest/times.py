"""Times on the command line of `vigil backtest`, `capture` and `replay`: ISO-8601 or relative.

    2024-05-03T10:15:00Z        ISO-8601 (a time without a zone is UTC; a date alone is its midnight)
    -7d, 7d, 2h30m              that long before now (the sign is optional: the past is meant)
    +2h                         only for --to: that long after --from
    now                         the current time
    1714731300000               milliseconds since the epoch (13 digits)

Pure: `now_ms` is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from app.durations import DurationError, parse_duration_ms
from app.pipeline.validate import format_time_ms

__all__ = ["TimeRange", "TimeSpecError", "parse_range", "parse_time"]

_EPOCH_MS: Final = re.compile(r"\d{13}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_FORMS: Final = "ISO-8601 (2024-05-03T10:15:00Z), a relative time (-7d, 2h30m), +DURATION after --from, or now"


class TimeSpecError(ValueError):
    """A time the user wrote cannot be read; the message says which forms are accepted."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[from_ms, to_ms] in ms since the epoch (both inclusive)."""

    from_ms: int
    to_ms: int

    def describe(self) -> str:
        """The range for people: '2024-05-03T10:15:00.000Z .. 2024-05-03T12:15:00.000Z'."""
        return f"{format_time_ms(self.from_ms)} .. {format_time_ms(self.to_ms)}"


def parse_time(text: str, *, now_ms: int, after_ms: int | None = None, option: str = "time") -> int:
    """One time in ms since the epoch. `after_ms`: what '+DURATION' counts from (None: not allowed)."""
    value = text.strip()
    if not value:
        raise TimeSpecError(f"{option}: empty; use {_FORMS}")
    if value.lower() == "now":
        return now_ms
    if _EPOCH_MS.fullmatch(value):
        return int(value)
    if value[0] in "+-" or (value[0].isdigit() and not _looks_like_date(value)):
        sign, amount = (value[0], value[1:]) if value[0] in "+-" else ("-", value)
        try:
            duration_ms = parse_duration_ms(amount)
        except DurationError:
            raise TimeSpecError(f"{option}: {text!r} is not a time; use {_FORMS}") from None
        if sign == "-":
            return now_ms - duration_ms
        if after_ms is None:
            raise TimeSpecError(f"{option}: {text!r}: '+DURATION' is only for --to (that long after --from)")
        return after_ms + duration_ms
    return _iso_ms(value, text, option)


def _looks_like_date(value: str) -> bool:
    return len(value) >= 8 and value[4:5] == "-" and value[:4].isdigit()


def _iso_ms(value: str, text: str, option: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise TimeSpecError(f"{option}: {text!r} is not a time; use {_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _MS  # exact (a float timestamp would round some ms down)


def parse_range(from_text: str | None, to_text: str | None, *, now_ms: int,
                default_from: str = "-1h") -> TimeRange:
    """The range `--from` .. `--to` (defaults: an hour ago .. now); TimeSpecError, in one line, when
    a time cannot be read or --from is after --to."""
    from_ms = parse_time(from_text or default_from, now_ms=now_ms, option="--from")
    to_ms = parse_time(to_text or "now", now_ms=now_ms, after_ms=from_ms, option="--to")
    if from_ms > to_ms:
        raise TimeSpecError(f"--from {format_time_ms(from_ms)} is after --to {format_time_ms(to_ms)}")
    return TimeRange(from_ms, to_ms)
