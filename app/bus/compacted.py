"""A reader of a whole compacted topic: every partition from the beginning, by a plain consumer
(no consumer group membership, no commits), kept up to date in a background thread, with a `ready`
event set once the topic was read to where it ended when the reader connected.

Small global views every process needs in full (silences, members, run states) are read this way
rather than by agents, which would split them by partition. Subclasses say what a record does
(`apply`); reconnecting after an error reads the topic again from the beginning.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Final, Self

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings

__all__ = ["CompactedReader", "read_to_end"]

log = logging.getLogger(__name__)

RETRY_S: Final = 5.0


class CompactedReader:
    """Reads `topic` (a physical name) into whatever `apply` keeps; `ready` is set once caught up."""

    #: said once while the topic cannot be read (what is stale meanwhile)
    stale_while_down: str = ""

    def __init__(self, settings: Settings, topic: str, *, ready: threading.Event, poll_s: float,
                 consumer_prefix: str) -> None:
        self.settings = settings
        self.topic = topic
        self.ready = ready
        self.poll_s = poll_s
        self._consumer_prefix = consumer_prefix
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._catch_up: dict[int, int] = {}  # partition -> end offset at assignment, until reached

    # -- what a subclass says ---------------------------------------------------------------------------
    def apply(self, msg: Message) -> None:
        """Take one record (a tombstone has value None)."""
        raise NotImplementedError

    def reset(self) -> None:
        """The topic is about to be read again from the beginning."""

    def caught_up_line(self) -> str:
        """Logged once, when first caught up."""
        return f"{self.topic}: read to its end"

    # -- one step at a time (used by the thread and by read_to_end) -------------------------------------
    def _connect(self) -> None:
        consumer = make_consumer(self.settings, f"{self._consumer_prefix}-{uuid.uuid4().hex[:12]}",
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
        self.reset()
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self._consumer = consumer
        self._note_caught_up()

    def _note_caught_up(self) -> None:
        if not self._catch_up and not self.ready.is_set():
            log.info("%s", self.caught_up_line())
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
            self.apply(msg)
            end = self._catch_up.get(msg.partition())
            offset = msg.offset()
            if end is not None and offset is not None and offset + 1 >= end:
                del self._catch_up[msg.partition()]
        if not msgs and self._catch_up:
            # Compaction or control records can leave the last offsets without a message to read.
            positions = consumer.position([TopicPartition(self.topic, p) for p in self._catch_up])
            for tp in positions:
                if tp.offset >= self._catch_up[tp.partition]:
                    del self._catch_up[tp.partition]
        self._note_caught_up()

    def close(self) -> None:
        """Close the consumer (the thread, if any, must be stopped first)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- background thread ------------------------------------------------------------------------------
    def start(self) -> Self:
        """Tail in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vigil-read-{self.topic}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        reported = False
        while not self._stop.is_set():
            try:
                self.poll_once()
                reported = False
            except Exception as exc:  # the bus may be down or the topic missing: keep retrying
                if not reported:
                    log.warning("cannot read %s (%s); retrying every %.0fs%s", self.topic, exc, RETRY_S,
                                self.stale_while_down)
                    reported = True
                self.close()
                self._stop.wait(RETRY_S)
        self.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def read_to_end(reader: CompactedReader, timeout_s: float) -> None:
    """Read the whole topic once, in this thread (then close); TimeoutError or KafkaException otherwise."""
    deadline = time.monotonic() + timeout_s
    try:
        while not reader.ready.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {reader.topic} to its end within {timeout_s:.0f}s")
            reader.poll_once()
    finally:
        reader.close()
