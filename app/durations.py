"""Durations as people write them ("500ms", "10s", "5m", "2h", "1d", "1h30m") in milliseconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

__all__ = ["DurationError", "PositiveDurationMs", "format_duration_ms", "parse_duration_ms", "to_duration_ms"]

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(ValueError):
    """Not a duration; the message shows the accepted forms."""


def parse_duration_ms(value: str | int | float) -> int:
    """Parse "10s" / "1h30m" / "250ms" (or a bare number of seconds) into milliseconds (> 0)."""
    if isinstance(value, bool):
        raise DurationError(f"{value!r} is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d)")
    if isinstance(value, int | float):
        ms = int(round(value * 1000))
    else:
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            ms = int(round(float(text) * 1000))
        else:
            pos, total_ms = 0, 0.0
            for m in _PART.finditer(text):
                if m.start() != pos:
                    break
                total_ms += float(m.group(1)) * _UNITS_MS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise DurationError(f"{value!r} is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d, 1h30m)")
            ms = int(round(total_ms))
    if ms <= 0:
        raise DurationError(f"{value!r}: a duration must be positive")
    return ms


def format_duration_ms(ms: int) -> str:
    """Shortest exact form: 90000 -> "1m30s", 250 -> "250ms"."""
    if ms <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


def to_duration_ms(value: Any) -> Any:
    """A pydantic BeforeValidator: a duration as people write it (or a number of seconds) to ms;
    other types are left for pydantic to refuse."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse_duration_ms(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from None
    return value


#: A positive duration in a config model: "10s", "1m30s", or a number of seconds; held as ms.
PositiveDurationMs = Annotated[int, BeforeValidator(to_duration_ms), Field(gt=0)]
