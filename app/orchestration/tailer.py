"""A compacted topic read into a dict (key -> decoded value; a tombstone removes the key), from the
beginning, without a consumer group: what every executor needs of `members`, and what `vigil runs`
reads of `run-states`. `ready` is set once the topic was read to where it ended at the start.

    tail = CompactedTail(settings, "members", decode=member_decoder(settings)).start()
    tail.ready.wait(10); tail.snapshot()
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings

__all__ = ["CompactedTail", "read_compacted"]

log = logging.getLogger(__name__)

_RETRY_S: Final = 5.0
#: decode(key, value bytes) -> value, or None to ignore the record
Decoder = Callable[[str, bytes], Any]


class CompactedTail:
    """Keeps `values` up to date with a compacted topic (see the module docstring)."""

    def __init__(self, settings: Settings, logical_topic: str, *, decode: Decoder, poll_s: float = 0.2) -> None:
        self.settings = settings
        self.topic = settings.topic(logical_topic)
        self.decode = decode
        self.poll_s = poll_s
        self.ready = threading.Event()
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._catch_up: dict[int, int] = {}
        #: bumped on every change (readers can tell whether anything moved)
        self.version = 0

    def snapshot(self) -> dict[str, Any]:
        """A copy of the current values."""
        with self._lock:
            return dict(self._values)

    def get(self, key: str) -> Any:
        with self._lock:
            return self._values.get(key)

    def _connect(self) -> None:
        consumer = make_consumer(self.settings, f"vigil-tail-{uuid.uuid4().hex[:12]}",
                                 **{"enable.auto.commit": False, "enable.partition.eof": False})
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {self.topic} does not exist (vigil topics apply)"))
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                    for p in meta.partitions}
        except KafkaException:
            consumer.close()
            raise
        self._catch_up = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
        with self._lock:
            self._values.clear()  # read again from the beginning: what was deleted meanwhile goes too
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self._consumer = consumer
        self._note_caught_up()

    def _note_caught_up(self) -> None:
        if not self._catch_up and not self.ready.is_set():
            log.info("%s: %d entries read", self.topic, len(self._values))
            self.ready.set()

    def poll_once(self) -> None:
        """Read what is available (connecting first if needed) and apply it."""
        if self._consumer is None:
            self._connect()
        consumer = self._consumer
        assert consumer is not None
        msgs = consumer.consume(1000, timeout=self.poll_s)
        for msg in msgs:
            if msg.error() is not None:
                continue
            key = (msg.key() or b"").decode("utf-8", "replace")
            raw = msg.value()
            try:
                value = None if raw is None else self.decode(key, raw)
            except Exception as exc:  # a record we cannot read must not stop the view
                log.warning("%s: cannot read the record of %r at offset %d: %s", self.topic, key, msg.offset(), exc)
                value = None
            with self._lock:
                if raw is None:
                    self._values.pop(key, None)
                elif value is not None:
                    self._values[key] = value
                self.version += 1
            end = self._catch_up.get(msg.partition())
            if end is not None and msg.offset() + 1 >= end:
                del self._catch_up[msg.partition()]
        if not msgs and self._catch_up:
            positions = consumer.position([TopicPartition(self.topic, p) for p in self._catch_up])
            for tp in positions:
                if tp.offset >= self._catch_up[tp.partition]:
                    del self._catch_up[tp.partition]
        self._note_caught_up()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def start(self) -> CompactedTail:
        """Tail in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vigil-tail-{self.topic}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        reported = False
        while not self._stop.is_set():
            try:
                self.poll_once()
                reported = False
            except Exception as exc:
                if not reported:
                    log.warning("cannot read %s (%s); retrying every %.0fs", self.topic, exc, _RETRY_S)
                    reported = True
                self.close()
                self._stop.wait(_RETRY_S)
        self.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def read_compacted(settings: Settings, logical_topic: str, *, decode: Decoder, timeout_s: float = 30.0
                   ) -> dict[str, Any]:
    """Every current value of a compacted topic (read to its end once); TimeoutError otherwise."""
    tail = CompactedTail(settings, logical_topic, decode=decode)
    deadline = time.monotonic() + timeout_s
    try:
        while not tail.ready.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {tail.topic} to its end within {timeout_s:.0f}s")
            tail.poll_once()
    finally:
        tail.close()
    return tail.snapshot()
