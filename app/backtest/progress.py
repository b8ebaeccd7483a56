"""A one-line progress bar on stderr for long reads (backtest, capture, replay): records done, the
event-time position, the rate and the time left. Drawn only on a terminal; `render_progress` is
pure (tested as such).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

from app.pipeline.validate import format_time_ms

__all__ = ["ProgressBar", "render_progress"]

_WIDTH: Final = 24


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def render_progress(done: int, total: int, position_ms: int | None, elapsed_s: float, *, noun: str = "events") -> str:
    """'[#########...............]  38%  380,000/1,000,000 events  at 2024-05-03T10:15:00.000Z
    85,000 ev/s  ETA 0:00:07' (no position, rate or ETA until they are known)."""
    fraction = min(1.0, done / total) if total > 0 else 1.0
    filled = int(fraction * _WIDTH)
    parts = [f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction * 100:3.0f}%", f"{done:,}/{total:,} {noun}"]
    if position_ms is not None:
        parts.append(f"at {format_time_ms(position_ms)}")
    if elapsed_s > 0 and done > 0:
        rate = done / elapsed_s
        parts.append(f"{rate:,.0f} {noun[:2]}/s")
        if total > done:
            parts.append(f"ETA {_clock((total - done) / rate)}")
    return "  ".join(parts)


class ProgressBar:
    """Redraws the progress line at most every `interval_s`; a no-op when `stream` is not a terminal."""

    def __init__(self, total: int = 0, *, noun: str = "events", stream: TextIO | None = None, interval_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic, force: bool = False) -> None:
        self.total = total
        self.noun = noun
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._drawn = 0.0
        self._width = 0

    def begin(self, total: int) -> None:
        """How many records there are to do (known once the range's offsets are)."""
        self.total = total
        self.started = self.clock()

    def update(self, records: int, position_ms: int | None) -> None:
        """Tell how far the run has got (drawn now if the last draw is old enough)."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self._drawn < self.interval_s and records < self.total:
            return
        self._drawn = now
        line = render_progress(records, self.total, position_ms, now - self.started, noun=self.noun)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def show(self, records: int, total: int, position_ms: int | None = None) -> None:
        """`update` with the total told each time (for loops that learn it as they go)."""
        if total != self.total:
            self.begin(total)
        self.update(records, position_ms)

    def close(self) -> None:
        """Clear the line (the summary follows)."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
