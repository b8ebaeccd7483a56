"""The metric sinks as a built-in stage: one agent on `metrics` (the closed windows the pipeline
publishes as vigil.WindowAggregate) hands each batch to every enabled sink, written on the public
agent API like the pipeline. Built from settings by app.stages; with no sink enabled the stage
has no agent, so the worker does not even read `metrics`.

The agent's cost per window is a conversion and a list append: encoding and network I/O happen in
the push sinks' senders (app.sinks.delivery), in a child process of the worker by default
(app.sinks.process: their CPU then never competes with the pipeline for the GIL) or in threads
(`sinks.senders: thread`), and the Prometheus exposition only keeps the latest window per identity
for the next scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from app.pipeline.tracker import METRICS_TOPIC
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.stage import Stage
from app.sinks.config import SinksConfig
from app.sinks.exposition import LatestWindows
from app.sinks.metrics import SinkMetrics
from app.sinks.process import SenderProcess
from app.sinks.push import Sender, build_push_sinks, enabled_push_sections
from app.sinks.windows import WINDOW_RECORD, ClosedWindow, NotAWindow

__all__ = ["AGENT_NAME", "SinksStage"]

log = logging.getLogger(__name__)

AGENT_NAME: Final = "sinks"
#: Log the first records on `metrics` that are not windows, then one in this many (all are counted).
_LOG_EVERY: Final = 1000


class SinksStage:
    """The enabled sinks and the agent that feeds them. `stage()` hands them to a worker; closing
    the stage stops the senders (what they hold goes to their disk buffers)."""

    def __init__(self, config: SinksConfig, *, state_dir: Path, registry: AgentRegistry | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.metrics = SinkMetrics()
        #: records on `metrics` that are not closed windows (skipped)
        self.skipped = 0
        self.exposition: LatestWindows | None = None
        if config.prometheus.enabled:
            self.exposition = LatestWindows(max_series=config.prometheus.max_series,
                                            stale_windows=config.prometheus.stale_windows,
                                            on_cut=self.metrics.series_cut.labels("prometheus").inc,
                                            on_size=self.metrics.series.labels("prometheus").set)
            self.metrics.registry.register(self.exposition)
        #: what the windows are offered to: the push sinks, or the process that runs them
        self.push: list[Sender] = []
        if config.senders == "process" and enabled_push_sections(config):
            self.push.append(SenderProcess(config, state_dir=Path(state_dir), metrics=self.metrics, environ=environ))
        else:
            sinks = build_push_sinks(config, state_dir=Path(state_dir), metrics=self.metrics, environ=environ)
            for sink in sinks:
                sink.start()
            self.push.extend(sinks)
        self.agent: Agent = agent(METRICS_TOPIC, name=AGENT_NAME, batch=True,
                                  registry=registry or AgentRegistry())(self.process)

    def stage(self) -> Stage:
        """The agent (none when no sink is enabled) and the sinks' metrics, for a worker to run."""
        enabled = self.exposition is not None or bool(self.push)
        return Stage("sinks", [self.agent] if enabled else [], {}, [self.metrics.registry], self.close)

    def process(self, values: list[Any], ctx: AgentContext) -> None:
        """Hand a batch of closed windows to every enabled sink (never waits for one)."""
        windows: list[ClosedWindow] = []
        for value, record in zip(values, ctx.records, strict=True):
            try:
                if record.type_name not in (WINDOW_RECORD, None):
                    raise NotAWindow(f"a {record.type_name}, not a {WINDOW_RECORD}")
                windows.append(ClosedWindow.from_record(value))
            except NotAWindow as exc:
                self._skip(ctx, record.offset, exc)
        if not windows:
            return
        if self.exposition is not None:
            self.exposition.update(windows)
        for sink in self.push:
            sink.offer(windows)

    def _skip(self, ctx: AgentContext, offset: int, exc: Exception) -> None:
        self.skipped += 1
        if self.skipped <= 10 or self.skipped % _LOG_EVERY == 0:
            log.warning("sinks: skipped %s[%d]@%d (%d so far): %s", ctx.topic, ctx.partition, offset,
                        self.skipped, exc)

    def close(self) -> None:
        """Stop every push sink (each even if another fails; the first error is raised)."""
        errors = []
        for sink in self.push:
            try:
                sink.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
