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


def test_records_produced_for_an_ended_epoch_count_in_it() -> None:
    """A commit point's changelog records are produced in slices after its epoch ended: they count,
    and their offsets checkpoint, in that epoch, not the open one."""
    d = DeliveryTracker()
    d.count += 1
    output = d.on_delivery
    epoch = d.close_epoch()
    d.count += 1  # an output of the open epoch
    late = d.changelog_callback(epoch)
    d.add(epoch, 2)
    output(None, Msg("alerts", 0, 5))
    late(None, Msg("cl", 1, 40))
    assert not d.acknowledged(epoch)
    late(None, Msg("cl", 1, 41))
    assert d.acknowledged(epoch)
    assert d.release(epoch) == {("cl", 1): 41}
    assert not d.acknowledged(d.close_epoch())  # the open epoch's output is still unacknowledged
