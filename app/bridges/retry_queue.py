"""Items a bridge keeps in memory while the bus or the schema registry cannot take them (the
syslog bridge cannot ask its senders to resend). Bounded: past `max_items` the oldest are dropped
and the caller counts them. Thread-safe: delivery failures are reported from the sink's thread.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["RetryQueue"]

T = TypeVar("T")


class RetryQueue(Generic[T]):
    """A bounded FIFO that drops its oldest items when full (see the module docstring)."""

    def __init__(self, max_items: int) -> None:
        if max_items <= 0:
            raise ValueError(f"max_items must be positive, got {max_items}")
        self.max_items = max_items
        self._items: deque[T] = deque()
        self._lock = threading.Lock()

    def push(self, item: T) -> int:
        """Keep `item` behind the others; returns how many of the oldest were dropped for it (0 or 1)."""
        with self._lock:
            self._items.append(item)
            if len(self._items) > self.max_items:
                self._items.popleft()
                return 1
            return 0

    def push_front(self, item: T) -> int:
        """Put back an item taken with `pop` (a resend failed), ahead of the others; returns 1 when
        the queue filled up meanwhile and it, the oldest, is dropped instead."""
        with self._lock:
            if len(self._items) >= self.max_items:
                return 1
            self._items.appendleft(item)
            return 0

    def pop(self) -> T | None:
        """The oldest item, or None when empty."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
