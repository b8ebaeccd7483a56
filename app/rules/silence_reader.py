"""Tails the compacted `silences` topic into a SilenceSet (a background thread in every worker).

Silences are a small global view every worker needs in full, not per-partition state, so they are
read by a plain consumer that assigns every partition from the beginning (no consumer group
membership, no commits) rather than by an agent: app.bus.compacted.
"""

from __future__ import annotations

from confluent_kafka import Message

from app.bus.compacted import CompactedReader, read_to_end
from app.config import Settings
from app.rules.silences import SilenceSet
from app.rules.topics import SILENCES_TOPIC

__all__ = ["SILENCES_TOPIC", "SilenceReader", "read_silences"]


class SilenceReader(CompactedReader):
    """Keeps `silences` up to date with the topic; `silences.ready` is set once caught up."""

    stale_while_down = ", actions are not checked against new silences meanwhile"

    def __init__(self, settings: Settings, silences: SilenceSet | None = None, *, poll_s: float = 0.5) -> None:
        self.silences = silences if silences is not None else SilenceSet()
        super().__init__(settings, settings.topic(SILENCES_TOPIC), ready=self.silences.ready, poll_s=poll_s,
                         consumer_prefix="vigil-silences")

    def apply(self, msg: Message) -> None:
        self.silences.apply(msg.key(), msg.value())

    def caught_up_line(self) -> str:
        return f"silences: {len(self.silences)} known from {self.topic}"


def read_silences(settings: Settings, *, timeout_s: float = 30.0) -> SilenceSet:
    """Every silence currently on the topic (read to its end once); raises TimeoutError or KafkaException."""
    reader = SilenceReader(settings, poll_s=0.2)
    read_to_end(reader, timeout_s)
    return reader.silences
