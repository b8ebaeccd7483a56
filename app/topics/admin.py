"""Reads actual topics from Kafka and applies a TopicPlan (incremental config updates only)."""

from __future__ import annotations

from collections.abc import Collection

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from app.topics.diff import ActualTopic, TopicPlan, plan_topics
from app.topics.spec import TopicSpec

__all__ = ["TopicAdminError", "apply_plan", "describe_topics", "reconcile"]

_TIMEOUT_S = 30.0


class TopicAdminError(Exception):
    """Kafka refused a topic operation; names the topic and the broker's reason."""


def describe_topics(admin: AdminClient, names: list[str]) -> dict[str, ActualTopic]:
    """Current partitions, replication and explicitly-set configs of the named topics that exist."""
    md = admin.list_topics(timeout=_TIMEOUT_S)
    present = [n for n in names if n in md.topics and md.topics[n].error is None]
    if not present:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present],
                                     request_timeout=_TIMEOUT_S)
    out: dict[str, ActualTopic] = {}
    for resource, fut in futures.items():
        entries = fut.result()
        topic = md.topics[resource.name]
        explicit = {k: e.value for k, e in entries.items()
                    if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and e.value is not None}
        parts = topic.partitions
        replication = len(next(iter(parts.values())).replicas) if parts else 0
        out[resource.name] = ActualTopic(resource.name, len(parts), replication, explicit)
    return out


def apply_plan(admin: AdminClient, plan: TopicPlan, specs: dict[str, TopicSpec]) -> list[str]:
    """Carry out a plan; return a line per change done. Raises TopicAdminError on refusal."""
    done: list[str] = []
    creates = [specs[c.topic] for c in plan.changes if c.action == "create"]
    if creates:
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config)
               for s in creates]
        _wait(admin.create_topics(new, request_timeout=_TIMEOUT_S), "create")
        done += [f"created {s.name}" for s in creates]
    grows = [c for c in plan.changes if c.action == "add-partitions"]
    if grows:
        _wait(admin.create_partitions([NewPartitions(c.topic, c.partitions) for c in grows],
                                      request_timeout=_TIMEOUT_S), "add partitions to")
        done += [f"grew {c.topic} to {c.partitions} partitions" for c in grows]
    configs = [c for c in plan.changes if c.action == "set-config"]
    if configs:
        resources = [ConfigResource(ResourceType.TOPIC, c.topic, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in c.config.items()])
            for c in configs]
        _wait(admin.incremental_alter_configs(resources), "configure")
        done += [f"configured {c.topic}: {c.detail}" for c in configs]
    return done


def _wait(futures: dict, verb: str) -> None:
    errors = []
    for key, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            name = getattr(key, "name", key)
            err = exc.args[0]
            if verb == "create" and err.code() == err.TOPIC_ALREADY_EXISTS:
                continue  # a concurrent apply won the race: idempotent
            errors.append(f"cannot {verb} topic {name}: {err.str()}")
    if errors:
        raise TopicAdminError("; ".join(errors))


def reconcile(admin: AdminClient, specs: list[TopicSpec], *, dry_run: bool,
              allow_repartition: Collection[str] = ()) -> tuple[TopicPlan, list[str]]:
    """Plan (and unless dry_run, apply) the changes for `specs`; returns the plan and what was done
    (refused changes are not made; see plan_topics)."""
    plan = plan_topics(specs, describe_topics(admin, [s.name for s in specs]), allow_repartition=allow_repartition)
    if dry_run or plan.empty:
        return plan, []
    return plan, apply_plan(admin, plan, {s.name: s for s in specs})
