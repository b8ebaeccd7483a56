"""Window arithmetic (pure): which windows contain a timestamp, how windowed keys are packed
(with the ordered-key codec, app.runtime.keys), and when a window is closed for a given watermark.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.runtime.keys import pack, pack_time, prefix, unpack, unpack_time

__all__ = ["Window", "is_closed", "pack_window_key", "unpack_window_key", "window_prefix", "windows_for"]


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
    """Store key of one window of one key, (key, start): sorts by key, then window start."""
    return pack(key, pack_time(start_ms))


def unpack_window_key(packed: str) -> tuple[str, int]:
    """(key, window start) of a store key made by `pack_window_key`."""
    key, start = unpack(packed, 2)
    return key, unpack_time(start)


def window_prefix(key: str) -> str:
    """Prefix of every window of a key (for range scans)."""
    return prefix(key)
