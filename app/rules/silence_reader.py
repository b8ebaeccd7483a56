"""Tails the compacted `silences` topic into a SilenceSet (a background thread in every worker).

Silences are a small global view every worker needs in full, not per-partition state, so they are
read by a plain consumer that assigns every partition from the beginning (no consumer group
membership, no commits) rather than by an agent.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from app.bus.clients import make_consumer
from app.config import Settings
from app.rules.silences import SilenceSet
from app.rules.topics import SILENCES_TOPIC

__all__ = ["SILENCES_TOPIC", "SilenceReader", "read_silences"]

log = logging.getLogger(__name__)

_RETRY_S: Final = 5.0


class SilenceReader:
    """Keeps `silences` up to date with the topic; `silences.ready` is set once caught up."""

    def __init__(self, settings: Settings, silences: SilenceSet | None = None, *, poll_s: float = 0.5) -> None:
        self.settings = settings
        self.silences = silences if silences is not None else SilenceSet()
        self.topic = settings.topic(SILENCES_TOPIC)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._catch_up: dict[int, int] = {}  # partition -> end offset at assignment, until reached

    # -- one step at a time (used by the thread and by `read_silences`) --------------------------------
    def _connect(self) -> bool:
        consumer = make_consumer(self.settings, f"vigil-silences-{uuid.uuid4().hex[:12]}",
                                 **{"enable.auto.commit": False, "enable.partition.eof": False})
        try:
            md = consumer.list_topics(self.topic, timeout=10)
            meta = md.topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {self.topic} does not exist (vigil topics apply)"))
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                    for p in meta.partitions}
        except KafkaException:
            consumer.close()
            raise
        self._catch_up = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self._consumer = consumer
        self._note_caught_up()
        return True

    def _note_caught_up(self) -> None:
        if not self._catch_up and not self.silences.ready.is_set():
            log.info("silences: %d known from %s", len(self.silences), self.topic)
            self.silences.ready.set()

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
            self.silences.apply(msg.key(), msg.value())
            end = self._catch_up.get(msg.partition())
            if end is not None and msg.offset() + 1 >= end:
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
    def start(self) -> SilenceReader:
        """Start tailing in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-silences", daemon=True)
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
                    log.warning("silences: cannot read %s (%s); retrying every %.0fs, actions are not "
                                "checked against new silences meanwhile", self.topic, exc, _RETRY_S)
                    reported = True
                self.close()
                self._stop.wait(_RETRY_S)
        self.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def read_silences(settings: Settings, *, timeout_s: float = 30.0) -> SilenceSet:
    """Every silence currently on the topic (read to its end once); raises TimeoutError or KafkaException."""
    reader = SilenceReader(settings, poll_s=0.2)
    deadline = time.monotonic() + timeout_s
    try:
        while not reader.silences.ready.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {reader.topic} to its end within {timeout_s:.0f}s")
            reader.poll_once()
    finally:
        reader.close()
    return reader.silences
