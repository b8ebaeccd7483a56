"""Which produced records Kafka has acknowledged, per commit epoch.

An epoch is everything the worker produced between two commits (outputs, dead letters, changelog
records). Under at-least-once a commit is finished (stores written, consumer offsets committed)
once every record of its epoch and of all earlier ones is acknowledged. Counting acknowledgements
per epoch lets the worker go on processing meanwhile instead of blocking on a producer flush.

The delivery callbacks are closures made once per epoch, so a record costs one counter increment
when produced and one when acknowledged. Free of Kafka imports: callbacks receive librdkafka's
(err, msg) objects and only call their accessors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DeliveryTracker"]

#: (err, msg) -> None, as confluent-kafka calls on_delivery
DeliveryCallback = Callable[[Any, Any], None]


class DeliveryTracker:
    """Counts records produced and acknowledged per epoch, and the last changelog offset per
    changelog partition of each epoch (the checkpoint its stores are written with)."""

    def __init__(self) -> None:
        #: delivery failures not yet reported ("topic[partition]: reason"); a commit must not finish
        self.errors: list[str] = []
        #: records produced in the open epoch (the producer increments it)
        self.count = 0
        self.epoch = -1
        self._produced: dict[int, int] = {}
        self._delivered: dict[int, int] = {}
        self._changelog: dict[int, dict[tuple[str, int], int]] = {}
        self._late_changelog: dict[int, DeliveryCallback] = {}
        self.on_delivery: DeliveryCallback
        self.on_changelog: DeliveryCallback
        self._open(0)

    def _open(self, epoch: int) -> None:
        self.epoch = epoch
        self.count = 0
        self._delivered[epoch] = 0
        offsets: dict[tuple[str, int], int] = {}
        self._changelog[epoch] = offsets
        delivered, errors = self._delivered, self.errors

        def on_delivery(err: Any, msg: Any) -> None:
            delivered[epoch] += 1
            if err is not None:
                errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

        def on_changelog(err: Any, msg: Any) -> None:
            delivered[epoch] += 1
            if err is not None:
                errors.append(f"changelog {msg.topic()}[{msg.partition()}]: {err.str()}")
                return
            key = (msg.topic(), msg.partition())
            if msg.offset() > offsets.get(key, -1):
                offsets[key] = msg.offset()

        self.on_delivery = on_delivery
        self.on_changelog = on_changelog

    def close_epoch(self) -> int:
        """End the open epoch (a commit point) and open the next; returns the one ended. Records
        may still be added to the ended epoch (`changelog_callback`, `add`) until it is checked."""
        ended = self.epoch
        self._produced[ended] = self.count
        self._late_changelog[ended] = self.on_changelog
        self._open(ended + 1)
        return ended

    def changelog_callback(self, epoch: int) -> DeliveryCallback:
        """The changelog delivery callback of an ended epoch (its changelog records produced late)."""
        return self._late_changelog[epoch]

    def add(self, epoch: int, records: int) -> None:
        """Count records produced for an ended epoch."""
        self._produced[epoch] += records

    def acknowledged(self, epoch: int) -> bool:
        """Whether every record of an ended epoch was acknowledged (successfully or not)."""
        return self._delivered[epoch] >= self._produced[epoch]

    def release(self, epoch: int) -> dict[tuple[str, int], int]:
        """Forget an acknowledged epoch; returns its last offset per changelog partition."""
        del self._produced[epoch], self._delivered[epoch], self._late_changelog[epoch]
        return self._changelog.pop(epoch)
