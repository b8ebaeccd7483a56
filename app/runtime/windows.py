"""Window arithmetic (pure): which windows contain a timestamp, how windowed keys are packed,
and when a window is closed for a given watermark.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window", "is_closed", "pack_window_key", "unpack_window_key", "window_prefix", "windows_for"]

_SEP = "\x1f"
_OFFSET = 1 << 62  # keeps packed starts non-negative (and so correctly ordered) for any ms time


@dataclass(frozen=True, order=True)
class Window:
    """[start_ms, end_ms) in event time."""

    start_ms: int
    end_ms: int

    @property
    def size_ms(self) -> int:
        return self.end_ms - self.start_ms


def windows_for(timestamp_ms: int, *, size_ms: int, step_ms: int | None = None) -> list[Window]:
    """Windows containing the timestamp, oldest first. Tumbling when step is None or equals size;
    hopping (overlapping) when step < size. Windows are aligned to the epoch."""
    step = size_ms if step_ms is None else step_ms
    if size_ms <= 0 or step <= 0 or step > size_ms:
        raise ValueError(f"window size {size_ms}ms / step {step}ms: need 0 < step <= size")
    last_start = timestamp_ms - timestamp_ms % step
    if step == size_ms:  # tumbling: exactly one window
        return [Window(last_start, last_start + size_ms)]
    starts = []
    start = last_start
    while start > timestamp_ms - size_ms:
        starts.append(start)
        start -= step
    return [Window(s, s + size_ms) for s in reversed(starts)]


def is_closed(window_end_ms: int, *, grace_ms: int, watermark_ms: int) -> bool:
    """A window stops accepting events once the watermark reaches end + grace."""
    return watermark_ms >= window_end_ms + grace_ms


def pack_window_key(key: str, start_ms: int) -> str:
    """Store key of one window of one key: sorts by key, then window start (fixed-width hex)."""
    return f"{key}{_SEP}{start_ms + _OFFSET:016x}"


def unpack_window_key(packed: str) -> tuple[str, int]:
    key, _, start = packed.rpartition(_SEP)
    return key, int(start, 16) - _OFFSET


def window_prefix(key: str) -> str:
    """Prefix of every window of a key (for range scans)."""
    return f"{key}{_SEP}"
