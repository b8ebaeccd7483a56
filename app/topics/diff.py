"""What `topics apply` would change: pure comparison of declared and actual topics.

Never plans a deletion or a partition decrease (Kafka cannot shrink; data is never dropped);
such differences are reported as warnings instead. Growing a stateful topic (one whose partitions
agents keep state by) is refused unless allowed: Kafka's partitioner then sends a key's new
records to another partition than the one its state is on, splitting an identity's status,
windows and rule state in two (the migration is in the README, "Growing a stateful topic").
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from app.topics.spec import TopicSpec

__all__ = ["ActualTopic", "TopicChange", "TopicPlan", "plan_topics"]


@dataclass(frozen=True)
class ActualTopic:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]  # only non-default (explicitly set) configs


@dataclass(frozen=True)
class TopicChange:
    topic: str
    action: str  # create | add-partitions | set-config | warn | refuse
    detail: str
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.action:15} {self.topic}: {self.detail}"


@dataclass(frozen=True)
class TopicPlan:
    changes: list[TopicChange]

    @property
    def empty(self) -> bool:
        return not [c for c in self.changes if c.action not in ("warn", "refuse")]

    @property
    def refused(self) -> list[TopicChange]:
        """Changes not made without the user's say-so (growing a stateful topic)."""
        return [c for c in self.changes if c.action == "refuse"]


def plan_topics(desired: list[TopicSpec], actual: dict[str, ActualTopic], *,
                allow_repartition: Collection[str] = ()) -> TopicPlan:
    """Changes that bring `actual` to `desired` without losing data. Growing a stateful topic is a
    "refuse" change unless its name is in `allow_repartition`."""
    changes: list[TopicChange] = []
    for spec in desired:
        have = actual.get(spec.name)
        if have is None:
            changes.append(TopicChange(spec.name, "create",
                                       f"partitions={spec.partitions} replication={spec.replication} "
                                       f"config={spec.config}", partitions=spec.partitions, config=spec.config))
            continue
        if spec.partitions > have.partitions and spec.stateful and spec.name not in allow_repartition:
            changes.append(TopicChange(
                spec.name, "refuse", f"{have.partitions} -> {spec.partitions} partitions refused: agents keep state "
                f"by its partitions, and growing it sends keys to other partitions than their state; follow "
                f"\"Growing a stateful topic\" in the README, then run again with --allow-repartition {spec.name}",
                partitions=spec.partitions))
        elif spec.partitions > have.partitions:
            changes.append(TopicChange(spec.name, "add-partitions", f"{have.partitions} -> {spec.partitions}",
                                       partitions=spec.partitions))
        elif spec.partitions < have.partitions:
            changes.append(TopicChange(spec.name, "warn", f"has {have.partitions} partitions, declared "
                                       f"{spec.partitions}: Kafka cannot shrink a topic, left as is"))
        if spec.replication != have.replication:
            changes.append(TopicChange(spec.name, "warn", f"replication is {have.replication}, declared "
                                       f"{spec.replication}: change it with a partition reassignment"))
        drift = {k: v for k, v in spec.config.items() if have.config.get(k) != v}
        if drift:
            shown = ", ".join(f"{k}: {have.config.get(k, '(default)')} -> {v}" for k, v in sorted(drift.items()))
            changes.append(TopicChange(spec.name, "set-config", shown, config=drift))
    return TopicPlan(changes)
