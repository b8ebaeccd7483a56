"""Standby replicas: warm copies of other workers' partitions, for a fast failover.

With `standby_replicas: N`, each partition of a stateful source topic is kept warm on up to N
other workers: they follow its changelogs into stores at the paths they would use if the partition
came to them, so when its owner dies they read only the last few seconds of changelog.

Who keeps which partition follows from the group's current assignment (read with the admin client
every few seconds, app.runtime.worker.group): members in the order of their instance ids form a
ring, and the N members after a partition's owner keep it. The choice is a pure function
(`standby_partitions`). The consumer group's assignor, not Vigil, picks a dead member's heir, so a
standby is the heir only when the group hands the partition to it: with N = members - 1 every
survivor is warm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from app.runtime.metrics import WorkerMetrics
from app.runtime.store import PartitionStore
from app.runtime.tables import Table
from app.runtime.worker.group import Assignments
from app.runtime.worker.restore import Restorer

__all__ = ["Standbys", "standby_partitions"]

log = logging.getLogger(__name__)

SourcePartition = tuple[str, int]


def standby_partitions(assignments: Mapping[str, Iterable[SourcePartition]], me: str,
                       replicas: int) -> set[SourcePartition]:
    """The partitions `me` keeps warm: those whose owner's next `replicas` members in the ring of
    members (sorted by instance id) include `me`. `assignments`: instance id -> its partitions."""
    members = sorted(assignments)
    if me not in members or replicas <= 0:
        return set()
    mine: set[SourcePartition] = set()
    for i, owner in enumerate(members):
        if owner == me:
            continue
        keepers = [members[(i + k) % len(members)] for k in range(1, len(members))][:replicas]
        if me in keepers:
            mine.update(assignments[owner])
    return mine - set(assignments[me])


class Standbys:
    """Keeps this worker's standby partitions in step with the group's assignment."""

    def __init__(self, *, me: str, replicas: int,
                 open_stores: Callable[[SourcePartition], list[tuple[Table, int, PartitionStore]]],
                 restorer: Restorer, metrics: WorkerMetrics) -> None:
        self.me = me
        self.replicas = replicas
        self.open_stores = open_stores
        self.restorer = restorer
        self.metrics = metrics

    def update(self, assignments: Assignments, owned: set[SourcePartition]) -> None:
        """A new description of the group (GroupView.tick): follow or release standbys accordingly."""
        if self.replicas <= 0:
            return
        wanted = standby_partitions(assignments, self.me, self.replicas) - owned
        following = set(self.restorer.following)
        self.restorer.release(sorted(following - wanted))
        for source in sorted(wanted - following):
            self.restorer.follow(source, self.open_stores(source))
        self.metrics.standby_partitions.set(len(wanted))

    def release(self, sources: list[SourcePartition]) -> None:
        """These partitions were assigned here: their standby stores close before the worker opens
        them (a RocksDB store is opened once) and restores only what they lack."""
        self.restorer.release([s for s in sources if s in set(self.restorer.following)])
