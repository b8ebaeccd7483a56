"""What `topics apply` would change: pure comparison of declared and actual topics.

Never plans a deletion or a partition decrease (Kafka cannot shrink; data is never dropped);
such differences are reported as warnings instead.
"""

from __future__ import annotations

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
    action: str  # create | add-partitions | set-config | warn
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
        return not [c for c in self.changes if c.action != "warn"]


def plan_topics(desired: list[TopicSpec], actual: dict[str, ActualTopic]) -> TopicPlan:
    """Changes that bring `actual` to `desired` without losing data."""
    changes: list[TopicChange] = []
    for spec in desired:
        have = actual.get(spec.name)
        if have is None:
            changes.append(TopicChange(spec.name, "create",
                                       f"partitions={spec.partitions} replication={spec.replication} "
                                       f"config={spec.config}", partitions=spec.partitions, config=spec.config))
            continue
        if spec.partitions > have.partitions:
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
