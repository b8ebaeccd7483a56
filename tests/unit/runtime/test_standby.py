"""Which other workers' partitions a worker keeps warm (app.runtime.worker.standby.standby_partitions)."""

from __future__ import annotations

from app.runtime.worker.standby import standby_partitions

ASSIGNED = {"w1": {("e", 0), ("e", 1)}, "w2": {("e", 2), ("e", 3)}, "w3": {("e", 4), ("e", 5)}}


def test_one_replica__each_member_keeps_the_previous_members_partitions_in_the_ring() -> None:
    assert standby_partitions(ASSIGNED, "w2", 1) == {("e", 0), ("e", 1)}
    assert standby_partitions(ASSIGNED, "w3", 1) == {("e", 2), ("e", 3)}
    assert standby_partitions(ASSIGNED, "w1", 1) == {("e", 4), ("e", 5)}  # the ring wraps


def test_every_partition_has_as_many_keepers_as_replicas_and_never_its_owner() -> None:
    for replicas in (1, 2):
        keepers: dict[tuple[str, int], list[str]] = {}
        for me in ASSIGNED:
            mine = standby_partitions(ASSIGNED, me, replicas)
            assert not mine & ASSIGNED[me]
            for tp in mine:
                keepers.setdefault(tp, []).append(me)
        assert all(len(k) == replicas for k in keepers.values()) and len(keepers) == 6


def test_more_replicas_than_other_members__every_other_member_keeps_it() -> None:
    assert standby_partitions(ASSIGNED, "w1", 5) == {("e", 2), ("e", 3), ("e", 4), ("e", 5)}


def test_none_when_off_alone_or_not_yet_a_member() -> None:
    assert standby_partitions(ASSIGNED, "w1", 0) == set()
    assert standby_partitions({"w1": {("e", 0)}}, "w1", 1) == set()
    assert standby_partitions(ASSIGNED, "w9", 1) == set()
