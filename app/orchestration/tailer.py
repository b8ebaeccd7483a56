"""A compacted topic read into a dict (key -> decoded value; a tombstone removes the key), from the
beginning, without a consumer group (app.bus.compacted): what every executor needs of `members`,
and what `vigil runs` reads of `run-states`. `ready` is set once the topic was read to where it
ended at the start.

    tail = CompactedTail(settings, "members", decode=member_decoder(settings)).start()
    tail.ready.wait(10); tail.snapshot()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from app.bus.compacted import CompactedReader, read_to_end
from app.config import Settings

__all__ = ["CompactedTail", "read_compacted"]

log = logging.getLogger(__name__)

#: decode(key, value bytes) -> value, or None to ignore the record
Decoder = Callable[[str, bytes], Any]


class CompactedTail(CompactedReader):
    """Keeps `values` up to date with a compacted topic (see the module docstring)."""

    def __init__(self, settings: Settings, logical_topic: str, *, decode: Decoder, poll_s: float = 0.2) -> None:
        super().__init__(settings, settings.topic(logical_topic), ready=threading.Event(), poll_s=poll_s,
                         consumer_prefix="vigil-tail")
        self.decode = decode
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: bumped on every change (readers can tell whether anything moved)
        self.version = 0

    def snapshot(self) -> dict[str, Any]:
        """A copy of the current values."""
        with self._lock:
            return dict(self._values)

    def get(self, key: str) -> Any:
        """The current value of `key` (None when absent)."""
        with self._lock:
            return self._values.get(key)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()  # read again from the beginning: what was deleted meanwhile goes too

    def caught_up_line(self) -> str:
        return f"{self.topic}: {len(self._values)} entries read"

    def apply(self, msg: Message) -> None:
        key = (msg.key() or b"").decode("utf-8", "replace")
        raw = msg.value()
        try:
            value = None if raw is None else self.decode(key, raw)
        except Exception as exc:  # a record we cannot read must not stop the view
            log.warning("%s: cannot read the record of %r at offset %s: %s", self.topic, key, msg.offset(), exc)
            value = None
        with self._lock:
            if raw is None:
                self._values.pop(key, None)
            elif value is not None:
                self._values[key] = value
            self.version += 1


def read_compacted(settings: Settings, logical_topic: str, *, decode: Decoder, timeout_s: float = 30.0
                   ) -> dict[str, Any]:
    """Every current value of a compacted topic (read to its end once); TimeoutError otherwise."""
    tail = CompactedTail(settings, logical_topic, decode=decode)
    read_to_end(tail, timeout_s)
    return tail.snapshot()
