"""DeliveryTracker: a commit point is acknowledged only when every record of its epoch is, and each
epoch keeps its own last changelog offsets (later epochs' records never move its checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from app.runtime.deliveries import DeliveryTracker


@dataclass
class Msg:
    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


class Err:
    def str(self) -> str:
        return "Broker: Message size too large"


def test_an_epoch_is_acknowledged_once_all_its_records_are() -> None:
    d = DeliveryTracker()
    first_output, first_changelog = d.on_delivery, d.on_changelog
    d.count += 3
    epoch = d.close_epoch()
    later = d.on_changelog
    d.count += 1
    later(None, Msg("cl", 0, 99))  # a record of the next epoch, acknowledged first
    assert not d.acknowledged(epoch)
    first_changelog(None, Msg("cl", 0, 7))
    first_changelog(None, Msg("cl", 0, 8))
    assert not d.acknowledged(epoch)
    first_output(None, Msg("alerts", 2, 1))
    assert d.acknowledged(epoch)
    assert d.release(epoch) == {("cl", 0): 8}  # not 99: that offset belongs to the next commit
    assert d.errors == []


def test_failures_are_reported_with_topic_and_partition() -> None:
    d = DeliveryTracker()
    d.count += 1
    d.on_changelog(Err(), Msg("cl", 3, -1))
    epoch = d.close_epoch()
    assert d.acknowledged(epoch)
    assert d.errors == ["changelog cl[3]: Broker: Message size too large"]
