"""The worker's built-in pipeline on `events`, written on the public agent API: validation (bad
records to `events-dlq` with the reason), the archive index, status with alerts and flap detection,
metric windows, and absence (ttl) expiry on wall-clock timers. `vigil worker` builds one from the
settings (app.stages) and runs its agent and its HTTP query routes (app.pipeline.routes).

One batch agent runs every stage: each event is normalised once and each stage is a plain method
call (app.pipeline.archive, app.pipeline.tracker) from one compiled loop (app.pipeline.intake),
which keeps the per-event cost to what the stages themselves do. Per batch (the records of one
partition the worker consumed together), an identity's state is read and copied once, updated in
place by each of its events in offset order, and stored once; its timers are armed once. The
partition's event-time watermark is followed event by event, so window lateness is decided exactly
as if events came one at a time; windows that close within the batch are published right after it.
Tables are co-partitioned with `events` (keyed by identity).

`build_pipeline(config)` builds an independent one (tests use small windows); several can live in
one process.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Final

from prometheus_client import CollectorRegistry

from app.dead_letter_limit import DeadLetterLimiter, DeadLetterLimits
from app.pipeline.archive import ArchiveIndex, FoundEvent
from app.pipeline.config import PipelineConfig
from app.pipeline.intake import process_records
from app.pipeline.routes import pipeline_routes
from app.pipeline.tracker import Tracker
from app.pipeline.validate import EventClock, Rejection
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.engine import InRecord
from app.runtime.stage import Stage
from app.runtime.tables import Table

__all__ = ["DLQ_TOPIC", "EVENTS_TOPIC", "Pipeline", "build_pipeline"]

log = logging.getLogger(__name__)

EVENTS_TOPIC: Final = "events"
DLQ_TOPIC: Final = "events-dlq"
AGENT_NAME: Final = "pipeline"
#: Log the first rejections of a kind, then one in this many (all are counted and dead-lettered).
_LOG_EVERY: Final = 1000


class Pipeline:
    """The built-in stages and the agent that runs them."""

    def __init__(self, config: PipelineConfig, *, registry: AgentRegistry | None = None,
                 name: str = AGENT_NAME, dead_letter_limits: DeadLetterLimits | None = None,
                 window_records: bool = True) -> None:
        """`window_records=False`: closed metric windows are counted (tracker.take_unsent_windows),
        not sent, for a run where nothing reads them (a backtest)."""
        self.config = config
        self.max_future_ms = config.max_future_ms
        self.archive = ArchiveIndex(retention_ms=config.archive_retention_ms)
        self.tracker = Tracker(config, on_page=self.archive.write_page, window_records=window_records)
        #: rejected records by the field that failed ("" for a record that is not a mapping)
        self.rejected: Counter[str] = Counter()
        #: events whose Kafka key is not their identity (their state may be split across partitions)
        self.misrouted = 0
        #: rejected records written to events-dlq per problem field at most (settings.dlq_*); the rest
        #: are counted (vigil_dead_letters_summarised_total) and summarised
        self.dead_letter_limit = DeadLetterLimiter(dead_letter_limits)
        self.metrics = CollectorRegistry(auto_describe=True)
        self.metrics.register(self.dead_letter_limit.collector())
        tables: tuple[Table, ...] = (*self.archive.tables, *self.tracker.tables)
        self.agent: Agent = agent(EVENTS_TOPIC, name=name, tables=tables, dlq_topic=DLQ_TOPIC, batch=True,
                                  timestamp=EventClock(self.max_future_ms),
                                  registry=registry or AgentRegistry())(self.process)
        self.agent.on_timer(self.on_timer)
        self.agent.on_rebuild(self.rebuild)

    def stage(self) -> Stage:
        """The pipeline's agent and its query routes, for a worker to run."""
        log.debug("built-in pipeline: %s", self.config.describe())
        return Stage("pipeline", [self.agent], pipeline_routes(self), [self.tracker.expiry.registry, self.metrics])

    def find_events(self, *, subject: str = "*", name: str = "*", since_ms: int, until_ms: int,
                    limit: int) -> list[FoundEvent]:
        """Indexed events of matching identities in [since_ms, until_ms] on the local partitions,
        newest first (archive pages plus the references still waiting in identity states)."""
        return self.archive.find_events(subject=subject, name=name, since_ms=since_ms, until_ms=until_ms, limit=limit,
                                        waiting=self.tracker.waiting_refs(subject=subject, name=name))

    def stats(self) -> dict[str, Any]:
        """Counts since the worker started: rejected records by field, events dropped from windows as
        late, events keyed other than by their identity, identities forgotten after their retention."""
        return {"rejected": dict(self.rejected), "late_dropped": self.tracker.late_dropped,
                "misrouted": self.misrouted, "expired": self.tracker.expiry.counts.get("identity", 0)}

    def process(self, values: list[Any], ctx: AgentContext) -> None:
        """Validate, index, fold status, update metric windows (the built-in pipeline), for a batch
        of records of one partition (`ctx.records`, in offset order)."""
        process_records(ctx.records, ctx.event_times, ctx, archive=self.archive, tracker=self.tracker,
                        max_future_ms=self.max_future_ms, on_reject=self._reject, on_misrouted=self._misrouted)
        self._summarise_rejections(ctx)

    def rebuild(self, ctx: AgentContext) -> None:
        """The id index is local-only: re-derive it from the pages and waiting references."""
        indexed = self.archive.rebuild(self.tracker.bound_refs())
        log.info("re-indexed %d event ids of %s[%d]", indexed, ctx.topic, ctx.partition)

    def on_timer(self, key: str, payload: Any, ctx: AgentContext) -> None:
        """An absence deadline (identity keys), a window close or an index prune is due."""
        if self.archive.owns_timer(key):
            self.archive.prune(key)
        elif self.tracker.owns_timer(key):
            self.tracker.on_timer(key, payload, ctx)
        else:
            self.tracker.absence_due(key, payload, ctx)

    def _reject(self, rejection: Rejection, record: InRecord, ctx: AgentContext) -> None:
        """Dead-letter the record as consumed, with the reason in headers (like the runtime does for
        records an agent raised on, without re-running the batch record by record), within the
        dead-letter rate limit per problem field (past it: counted, and summarised after the batch)."""
        self.rejected[rejection.field] += 1
        count = self.rejected[rejection.field]
        if count <= 10 or count % _LOG_EVERY == 0:
            log.warning("rejected %s[%d]@%d (%s, %d so far with this problem): %s", ctx.topic, ctx.partition,
                        record.offset, rejection.type_name, count, rejection.reason)
        headers = {"vigil.agent": self.agent.name, "vigil.error": rejection.reason[:4000],
                   "vigil.field": rejection.field, "vigil.type": rejection.type_name, "vigil.topic": ctx.topic,
                   "vigil.partition": str(ctx.partition), "vigil.offset": str(record.offset)}
        if rejection.event_id is not None:
            headers["vigil.event_id"] = rejection.event_id
        # The field's head ("metrics" of "metrics.load1"): reasons stay a short fixed set.
        reason = rejection.field.split(".", 1)[0] or "record"
        if self.dead_letter_limit.admit(self.agent.name, reason, ctx.now_ms()):
            ctx.send(DLQ_TOPIC, record.key, record.raw_value, headers=headers)

    def _summarise_rejections(self, ctx: AgentContext) -> None:
        """Write the summaries of held-back rejections that are due."""
        for summary in self.dead_letter_limit.due(ctx.now_ms()):
            ctx.send(DLQ_TOPIC, summary.source, summary.value(), headers=summary.headers())

    def _misrouted(self, kafka_key: str | None, identity: str) -> None:
        self.misrouted += 1
        if self.misrouted <= 10 or self.misrouted % _LOG_EVERY == 0:
            log.warning("event of %s has Kafka key %r (%d such events): produce events keyed 'subject/name', "
                        "or an identity's state is split across partitions", identity, kafka_key, self.misrouted)


def build_pipeline(config: PipelineConfig | None = None, *, registry: AgentRegistry | None = None,
                   dead_letter_limits: DeadLetterLimits | None = None) -> Pipeline:
    """A pipeline with its own tables and agent (registered in `registry`, default: none shared)."""
    return Pipeline(config or PipelineConfig(), registry=registry or AgentRegistry(),
                    dead_letter_limits=dead_letter_limits)
