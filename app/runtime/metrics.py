"""Prometheus metrics of a worker (one registry per worker, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("vigil_agent_events_in", "records processed per agent", ["agent"], registry=r)
        self.events_out = Counter("vigil_agent_events_out", "records sent by agents, per topic", ["topic"],
                                  registry=r)
        self.dead_letters = Counter("vigil_dead_letters", "records sent to a dead-letter topic", ["agent", "stage"],
                                    registry=r)
        self.late_dropped = Gauge("vigil_late_events_dropped", "events dropped as late (past grace) per table",
                                  ["table"], registry=r)
        self.timers_fired = Counter("vigil_timers_fired", "timers fired per agent", ["agent"], registry=r)
        self.lag = Gauge("vigil_consumer_lag", "records not yet processed", ["topic", "partition"], registry=r)
        self.restore_remaining = Gauge("vigil_restore_remaining", "changelog records left to restore",
                                       ["table", "partition"], registry=r)
        self.restored = Counter("vigil_restored_records", "changelog records restored", ["table"], registry=r)
        self.standby_records = Counter("vigil_standby_records", "changelog records applied to standby copies of "
                                       "other workers' partitions", ["table"], registry=r)
        self.standby_partitions = Gauge("vigil_standby_partitions", "other workers' partitions kept warm here",
                                        registry=r)
        self.fenced = Counter("vigil_fenced_workers", "departed workers whose open transaction this worker aborted "
                              "(fenced) before taking their partitions over", registry=r)
        self.changelog_damage = Counter("vigil_changelog_damaged", "changelogs found to have lost records a table "
                                        "needed (compacted, truncated, emptied or recreated under it)",
                                        ["table", "partition"], registry=r)
        self.commits = Counter("vigil_commits", "commits (transactions under exactly-once)", registry=r)
        self.commit_seconds = Histogram("vigil_commit_seconds", "time per commit", registry=r,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.assigned = Gauge("vigil_assigned_partitions", "source partitions assigned", registry=r)
        self.partitions_gained = Counter("vigil_partitions_gained", "source partitions assigned to this worker",
                                         registry=r)
        self.partitions_given_up = Counter("vigil_partitions_given_up", "source partitions revoked from this "
                                           "worker or lost with its group membership", registry=r)
        self.degraded = Gauge("vigil_degraded", "1 while a dependency (schema registry, Kafka) fails; see /healthz",
                              registry=r)
        self.held_partitions = Gauge("vigil_held_partitions",
                                     "partitions paused at a record whose schema the registry cannot give now",
                                     registry=r)
        self.dependency_retries = Counter("vigil_dependency_retries", "retries of a failing dependency",
                                          ["dependency"], registry=r)
        self.rewinds = Counter("vigil_rewinds", "returns to the last committed point (uncommitted work redone)",
                               ["reason"], registry=r)
