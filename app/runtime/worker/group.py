"""The worker's consumer group as the admin client describes it: its members (by instance id) and
the source partitions each one is assigned, read every few seconds without blocking the loop.

Standby replicas (app.runtime.worker.standby) follow from it (`tick`), and exactly-once fencing
(app.runtime.worker.fencing) learns from it at rebalances which instances were members
(`describe_now`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from confluent_kafka.admin import AdminClient

__all__ = ["REFRESH_S", "Assignments", "GroupView", "assignments_of"]

log = logging.getLogger(__name__)

SourcePartition = tuple[str, int]
#: instance id (group.instance.id, else member id) -> its partitions of the source topics
Assignments = dict[str, set[SourcePartition]]
#: How often the group is described.
REFRESH_S = 5.0


def assignments_of(description: Any, topics: set[str]) -> Assignments:
    """The members of a ConsumerGroupDescription and their partitions of `topics`."""
    out: Assignments = {}
    for member in description.members:
        instance = member.group_instance_id or member.member_id
        parts = member.assignment.topic_partitions if member.assignment else []
        out[instance] = {(tp.topic, tp.partition) for tp in parts if tp.topic in topics}
    return out


class GroupView:
    """The group's latest description, refreshed every REFRESH_S by `tick` (never blocking), or at
    once by `describe_now`."""

    def __init__(self, admin: AdminClient, *, group_id: str, topics: Iterable[str]) -> None:
        self.admin = admin
        self.group_id = group_id
        self.topics = set(topics)
        #: the latest description (None before the first one arrived)
        self.latest: Assignments | None = None
        #: every instance id seen as a member since the start
        self.seen: set[str] = set()
        self._pending: Future[Any] | None = None
        self._due_s = 0.0

    def tick(self) -> Assignments | None:
        """Called every loop turn: sends a describe request every REFRESH_S; returns a description
        when one arrived since the last call (else None)."""
        now = time.monotonic()
        if self._pending is None:
            if now >= self._due_s:
                self._pending = self._describe(10.0)
                self._due_s = now + REFRESH_S
            return None
        if not self._pending.done():
            return None
        pending, self._pending = self._pending, None
        return self._take(pending)

    def describe_now(self, timeout_s: float) -> Assignments | None:
        """Describe the group and wait for the answer (None when Kafka did not give one in time)."""
        future = self._describe(timeout_s)
        try:
            future.result(timeout=timeout_s + 1)
        except Exception as exc:
            log.debug("cannot describe group %s: %s", self.group_id, exc)
            return None
        return self._take(future)

    def _describe(self, timeout_s: float) -> Future[Any]:
        future: Future[Any] = self.admin.describe_consumer_groups([self.group_id],
                                                                  request_timeout=timeout_s)[self.group_id]
        return future

    def _take(self, future: Future[Any]) -> Assignments | None:
        try:
            description = future.result()
        except Exception as exc:  # the group is being rebalanced, Kafka is away: next time
            log.debug("cannot describe group %s: %s", self.group_id, exc)
            return None
        assignments = assignments_of(description, self.topics)
        self.latest = assignments
        self.seen.update(assignments)
        return assignments
