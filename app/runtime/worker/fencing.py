"""Exactly-once: fencing the transactions of workers that left the group, so their heirs' outputs
become visible at once.

A worker's transactional.id is its group.instance.id (`<app id>-<instance id>`). A worker that dies
(SIGKILL, node loss) leaves its open transaction behind. Until the broker aborts it, after
transaction.timeout.ms (60 s) plus up to its abort check interval (10 s), read_committed consumers
of the output and changelog partitions it wrote cannot read past it, and the consumer offsets it
sent to that transaction keep its heir's committed-offset fetch waiting (UNSTABLE_OFFSET_COMMIT):
measured on benchmarks/failover.py, the dead worker's partitions produced visible output again
67 s after the SIGKILL, 22 s after the 45-s session timeout expired, standbys or not.

So at every rebalance a worker describes the group (who the members are), and when partitions are
assigned to it, it first fences the transactional ids of instances that were members at an earlier
rebalance and are no more: initialising transactions with a departed
instance's id bumps its producer epoch, and the coordinator aborts its open transaction at once
(what that instance would do itself on restart). Kafka Streams' per-task producers got the same
from their task's new owner. An instance that departed but still runs (a zombie) is fenced as it
must be: its next commit fails and it joins again. A fence that fails only costs the wait above.

The group is described at rebalances only, not every few seconds as standbys need: librdkafka
aborts the process when a DescribeGroups request times out in some cases (librdkafka #4605, open;
it killed a worker in the broker-outage test when every exactly-once worker described its group
every 5 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from app.bus.clients import make_producer
from app.config import Settings
from app.runtime.metrics import WorkerMetrics
from app.runtime.worker.group import GroupView

__all__ = ["Fencer", "departed_instances"]

log = logging.getLogger(__name__)

#: How long the group's description, and one fence, may take before the worker goes on without.
DESCRIBE_TIMEOUT_S = 5.0
FENCE_TIMEOUT_S = 10.0


def departed_instances(seen: Iterable[str], members: Iterable[str], *, me: str, app_id: str) -> list[str]:
    """The instances to fence: seen as members of the group before, members no more, other than
    `me`, and workers of this app (their instance ids start with `<app id>-`; a member without a
    group.instance.id is listed by its member id, which is no transactional id)."""
    prefix = f"{app_id}-"
    return sorted(i for i in set(seen) - set(members) if i != me and i.startswith(prefix))


class Fencer:
    """Fences the transactions of departed members before this worker takes partitions over."""

    def __init__(self, settings: Settings, group: GroupView, *, me: str, app_id: str,
                 transaction_timeout_ms: int, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.group = group
        self.me = me
        self.app_id = app_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.metrics = metrics

    def on_assign(self, gained: bool) -> None:
        """A rebalance assigned partitions here (`gained`) or nothing new: note the members, and
        before taking partitions over fence every instance that left the group since it was last
        seen in it."""
        seen_before = set(self.group.seen)
        members = self.group.describe_now(DESCRIBE_TIMEOUT_S)
        if members is None:
            if gained:
                log.warning("could not describe group %s: transactions a departed worker left open are not "
                            "fenced (its partitions' outputs wait until the broker aborts them)", self.group.group_id)
            return
        if not gained:
            return
        for instance in departed_instances(seen_before, members, me=self.me, app_id=self.app_id):
            self._fence(instance)
            self.group.seen.discard(instance)

    def _fence(self, transactional_id: str) -> None:
        started = time.monotonic()
        producer = make_producer(self.settings, **{"transactional.id": transactional_id,
                                                   "transaction.timeout.ms": self.transaction_timeout_ms})
        try:
            producer.init_transactions(FENCE_TIMEOUT_S)
        except Exception as exc:  # KafkaException; the broker aborts the transaction on its timeout anyway
            log.warning("could not fence the transactions of departed worker %s: %s", transactional_id, exc)
            return
        finally:
            producer.flush(0)
        self.metrics.fenced.inc()
        log.info("fenced departed worker %s: its open transaction is aborted (%.2f s)", transactional_id,
                 time.monotonic() - started)
