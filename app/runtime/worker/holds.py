"""Partitions held back while a dependency they need is failing (pure bookkeeping, no Kafka).

When a record cannot be decoded because the schema registry is unreachable (not because the record
is bad), the worker keeps the partition's position: it seeks back to that record and pauses the
partition. Holds decide when to try again (full-jitter backoff shared by all holds: one registry),
say why the worker is degraded, and forget partitions that are revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.retry import Backoff

__all__ = ["Hold", "Holds"]

TopicPartition = tuple[str, int]


@dataclass
class Hold:
    """A paused partition: where it stopped and when to try again."""

    offset: int
    reason: str
    retry_at_s: float


class Holds:
    """Held partitions (paused, waiting) and retrying ones (resumed, not yet past the record)."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.held: dict[TopicPartition, Hold] = {}
        #: resumed for another try: partition -> the reason it was held (until a record decodes)
        self.retrying: dict[TopicPartition, str] = {}
        #: holds made since the start (a metric)
        self.total = 0

    def __bool__(self) -> bool:
        return bool(self.held or self.retrying)

    def hold(self, tp: TopicPartition, offset: int, reason: str, now_s: float) -> Hold:
        """Hold a partition at `offset` (the record to retry); returns the hold with its retry time."""
        self.retrying.pop(tp, None)
        hold = Hold(offset, reason, now_s + self.backoff.next_delay_s())
        self.held[tp] = hold
        self.total += 1
        return hold

    def due(self, now_s: float) -> list[TopicPartition]:
        """Partitions whose retry time has come (to resume); they stay `retrying` until `passed`."""
        ready = [tp for tp, h in self.held.items() if h.retry_at_s <= now_s]
        for tp in ready:
            self.retrying[tp] = self.held.pop(tp).reason
        return ready

    def passed(self, tp: TopicPartition) -> None:
        """A record of the partition was decoded after a hold: the dependency answers again."""
        if self.retrying.pop(tp, None) is not None and not self:
            self.backoff.reset()

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked or rewound: their holds no longer apply."""
        for tp in tps:
            self.held.pop(tp, None)
            self.retrying.pop(tp, None)
        if not self:
            self.backoff.reset()

    def reasons(self) -> list[str]:
        """Why the worker is degraded, one line per distinct reason, naming its partitions."""
        by_reason: dict[str, list[str]] = {}
        for (topic, partition), hold in self.held.items():
            by_reason.setdefault(hold.reason, []).append(f"{topic}[{partition}]@{hold.offset}")
        for (topic, partition), reason in self.retrying.items():
            by_reason.setdefault(reason, []).append(f"{topic}[{partition}] (retrying)")
        return [f"{reason}: {', '.join(sorted(where))}" for reason, where in sorted(by_reason.items())]
