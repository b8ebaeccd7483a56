"""How a worker runs: its guarantee, ids, commit cadence and polling (WorkerOptions), and when the
run loop commits (commit_due, pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from app.runtime.gctune import STREAM_THRESHOLDS

__all__ = ["COMMIT_INTERVAL_HELP", "Guarantee", "WorkerOptions", "commit_due", "poll_wait_s"]

#: The --commit-interval-ms help of the commands that run a Worker.
COMMIT_INTERVAL_HELP = "default: 100 (exactly-once) / 5000 (at-least-once; also whenever caught up)"


class Guarantee(str, Enum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


@dataclass
class WorkerOptions:
    app_id: str = "vigil-worker"
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    instance_id: str | None = None  # stable per worker instance; default: host name
    #: default: 100 ms exactly-once, 5000 ms at-least-once. At-least-once commits are also made as soon
    #: as the consumer finds nothing new, so the interval only bounds how much a crash replays while
    #: records keep flowing; a commit costs one encode and changelog record per changed key, so a
    #: longer interval folds more updates of a key into one.
    commit_interval_ms: int | None = None
    #: Records per loop turn at most. Only a backlog fills a turn (take_available takes what has
    #: arrived), and there larger batches cost less per record: an agent pays per batch and key (the
    #: pipeline copies each identity's state once per batch). 50,000 is a turn of about 1 s at full
    #: speed, which is how late a wall-clock timer or an HTTP query may be served while catching up
    #: (measured, 1M pipeline benchmark: +5-16% events/s over 20,000, alternating runs).
    max_batch: int = 50_000
    poll_timeout_ms: int = 100
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no HTTP server; 0: any free port
    #: bearer token every HTTP path but /healthz requires (app.api_token); None: open
    api_token: bytes | None = None
    #: /metrics needs no token even when api_token is set (Prometheus scraping by annotations)
    metrics_open: bool = False
    clock: Callable[[], int] | None = None  # wall clock in ms (tests control it); default: time.time()
    topics_wait_s: float = 15.0  # how long to wait for source topics to exist (deployments: minutes)
    tune_gc: bool = True  # see Worker.run: CPython's default GC thresholds cost stream workers 30-45%
    #: the collector's thresholds when tune_gc (app.runtime.gctune; other values: for measuring)
    gc_thresholds: tuple[int, int, int] = STREAM_THRESHOLDS
    #: Retries of a failing dependency (schema registry, Kafka) back off up to this long.
    max_retry_backoff_s: float = 15.0
    #: How long the group waits for a silent worker before giving its partitions to others (Kafka's
    #: default). The worker is a static member (group.instance.id from app id and instance id): a
    #: restarted worker gets its partitions back without a rebalance within this time, and a broker
    #: restart shorter than this keeps its membership. A worker stopped for good is replaced after it.
    session_timeout_ms: int = 45_000
    #: Keep warm copies of other workers' partitions on this many of them (app.runtime.worker.standby):
    #: after a worker dies, the one that gets its partitions reads only the changelogs' last records.
    standby_replicas: int = 0

    @property
    def commit_interval(self) -> int:
        if self.commit_interval_ms is not None:
            return self.commit_interval_ms
        return 100 if self.guarantee == Guarantee.EXACTLY_ONCE else 5000


def commit_due(*, since_commit_s: float, interval_s: float, got: bool, writing: bool, uncommitted: bool) -> bool:
    """Whether the run loop commits now: at the interval, or as soon as the consumer is idle (a poll
    that waited the whole poll timeout got nothing) with something uncommitted. A poll that got
    nothing while a commit was still being written waited only briefly: a steady stream has such
    gaps all the time, and committing at each one re-encoded and re-sent every changed key several
    times a second (measured at 5,000 events/s: a commit every 0.2-0.5 s instead of every 5 s)."""
    return since_commit_s >= interval_s or (not got and not writing and uncommitted)


def poll_wait_s(wait_s: float, *, next_timer_ms: int | None, now_ms: int) -> float:
    """How long the run loop waits for records: `wait_s`, but not past the next wall-clock timer
    (it fires between polls: an orchestrator's turn re-armed 20 ms ahead waited for the whole
    100-ms poll timeout when no record came)."""
    if next_timer_ms is None:
        return wait_s
    return max(0.0, min(wait_s, (next_timer_ms - now_ms) / 1000))
