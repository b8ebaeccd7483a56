"""Running a backtest: the worker's stages built from settings, a range of history read from Kafka
(or records from a file), driven through a Replayer slice by slice, the would-be actions gathered.

    result = run_backtest(settings, BacktestRequest(rules_dirs=(Path("rules"),), time_range=...))

Slices: history is run in slices of event time (`slice_ms`), each partition up to the slice's end,
then the evaluation of what the slice routed, so the rules see the records of all partitions merged
in event time without holding the whole range. Empty stretches are skipped. Slices change no
result (timers fire at their due times either way); they bound memory and are the points where the
processes of a parallel run exchange routed records (app.backtest.parallel).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from app.backtest.replayer import FiredAction, PartitionBuffer, Replayer, Routed, RunCounts
from app.backtest.sharing import plan_shares
from app.backtest.source import (
    HistoryReader,
    PartitionRange,
    ReadCounts,
    RecordSource,
    SourceError,
    Unreadable,
    find_ranges,
    subject_filter,
)
from app.backtest.stores import StatePolicy
from app.backtest.times import TimeRange
from app.bus.clients import make_consumer
from app.config import Settings
from app.pipeline.agents import Pipeline
from app.pipeline.config import PipelineConfig
from app.rules.loader import load_rules
from app.rules.offline import RulesInvalidError
from app.rules.stage import RulesStage, StageConfig
from app.runtime.expiry import DEFAULT_STATE_RETENTION_MS
from app.runtime.gctune import collect_young, gc_paused, tune_for_streams

__all__ = ["DEFAULT_SLICE_MS", "BacktestRequest", "BacktestResult", "Exchange", "Progress", "SliceDriver",
           "SourceError", "build_replayer", "check_rule_dirs", "done", "merge_into", "run_backtest", "sort_actions"]

log = logging.getLogger(__name__)

#: Event time per slice (see the module docstring).
DEFAULT_SLICE_MS: Final = 10_000
#: Records run between two collections of cyclic garbage (automatic collection is paused while a
#: SliceDriver runs). Its states are replaced at every record and hold no cycles (a 100,000-event
#: benchmark run: ~3,000 automatic collections freed nothing, and took ~12% of its CPU), so
#: collections walk the surviving states for nothing; this bounds what a cycle could hold back.
COLLECT_EVERY_RECORDS: Final = 500_000
#: Records a rules stage remembers the rule matches of between routing and evaluating them (the same
#: objects here: each record is matched once); more than a slice routes at 1,000 events/s.
MATCH_MEMO: Final = 1 << 17


class Progress(Protocol):
    """Told how much there is to read, then how far a run has got (records read, event-time position)."""

    def begin(self, total: int) -> None: ...

    def update(self, records: int, position_ms: int | None) -> None: ...


class Exchange(Protocol):
    """How the processes of a parallel run meet between slices (app.backtest.parallel)."""

    def swap(self, outgoing: list[dict[int, list[Routed]]], next_ms: int | None
             ) -> tuple[list[list[list[Routed]]], int | None]:
        """Send each process what was routed to it, receive what the others routed here (per
        process, per rule set), and the earliest next record time of all (None: none left)."""
        ...


@dataclass(frozen=True)
class BacktestRequest:
    """What to backtest: one rule set, or two to compare (`rules_dirs`), over a range of a topic."""

    rules_dirs: tuple[Path, ...]
    time_range: TimeRange
    topic: str = "events"
    subject: str | None = None
    #: processes to use (None: one per core, at most one per partition with records)
    processes: int | None = 1
    slice_ms: int = DEFAULT_SLICE_MS
    #: tune the garbage collector for stream processing during the run (app.runtime.gctune) and pause its
    #: automatic collections (SliceDriver.pause_gc); off where the process is shared (the web server)
    tune_gc: bool = True


@dataclass
class BacktestResult:
    """What a backtest found. `actions` are sorted (see `sort_actions`)."""

    request: BacktestRequest
    actions: list[FiredAction] = field(default_factory=list)
    counts: RunCounts = field(default_factory=RunCounts)
    #: records read from the topic in the range (before --subject)
    read: int = 0
    filtered: int = 0
    unreadable: int = 0
    unreadable_listed: list[Unreadable] = field(default_factory=list)
    partitions: int = 0
    processes: int = 1
    elapsed_s: float = 0.0

    @property
    def no_data(self) -> bool:
        """Nothing in the range."""
        return self.read == 0 and self.unreadable == 0

    @property
    def events_per_s(self) -> float:
        return self.read / self.elapsed_s if self.elapsed_s > 0 else 0.0


def sort_actions(actions: Sequence[FiredAction]) -> list[FiredAction]:
    """Would-be actions in report order: rule set, firing time, rule, group, id (deterministic)."""
    return sorted(actions, key=lambda a: (a.ruleset, a.time_ms, a.rule, a.group_key, a.id))


def check_rule_dirs(dirs: Sequence[Path]) -> None:
    """Raise RulesInvalidError (every problem as file:line) unless every directory loads cleanly."""
    errors = [error for directory in dirs for error in load_rules(directory)[1]]
    if errors:
        raise RulesInvalidError(errors)


def build_replayer(pipeline_config: PipelineConfig, rules_dirs: Sequence[Path], *, partitions: Sequence[int],
                   worker: int = 0, workers: int = 1,
                   rules_state_retention_ms: int = DEFAULT_STATE_RETENTION_MS,
                   policy: StatePolicy | None = None, share: bool = True) -> Replayer:
    """A Replayer of the worker's stages: the pipeline as `pipeline_config` sets it up (the settings'
    `pipeline` section: PipelineConfig.from_settings) and the rules in `rules_dirs`, loaded once
    (no reload, no silences, no signing: nothing is sent), their groups' state kept as a worker
    keeps it (`rules_state_retention_ms`: Settings.rules_state_retention_ms). `policy`: where state
    lives (default: in memory, query-only tables dropped). `share`: two rule sets compared evaluate
    the rules they have in common once (app.backtest.sharing; False: each set whole)."""
    configs = [StageConfig(rules_dir=Path(d), reload_interval_ms=None, match_memo=MATCH_MEMO,
                           state_retention_ms=rules_state_retention_ms, dependencies=False) for d in rules_dirs]
    shares = plan_shares([load_rules(d)[0] for d in rules_dirs]) if share and len(rules_dirs) == 2 else None
    if shares is not None and all(len(s.serves) == 1 for s in shares):
        shares = None  # nothing shared: each set whole, from its directory
    stages = [RulesStage(config) for config in configs] if shares is None else \
        [RulesStage(configs[s.serves[0]], rules=s.ruleset) for s in shares]
    # Window records only counted: the replay routes alerts and events to the rules, never windows.
    return Replayer(Pipeline(pipeline_config, window_records=False), stages, partitions=partitions, worker=worker,
                    workers=workers, policy=policy, shares=shares)


class SliceDriver:
    """Feeds a Replayer from a source, slice by slice (see the module docstring)."""

    def __init__(self, replayer: Replayer, source: RecordSource, *, time_range: TimeRange,
                 slice_ms: int = DEFAULT_SLICE_MS, exchange: Exchange | None = None,
                 on_progress: Callable[[int | None], None] | None = None, pause_gc: bool = True) -> None:
        if slice_ms <= 0:
            raise ValueError(f"slice_ms must be positive, got {slice_ms}")
        self.replayer = replayer
        self.source = source
        self.time_range = time_range
        self.slice_ms = slice_ms
        self.exchange = exchange
        #: automatic collection paused during the run (COLLECT_EVERY_RECORDS); off in a process the
        #: backtest shares (the web server's): the pause would hold for every thread of it
        self.pause_gc = pause_gc
        self.on_progress = on_progress

    def run(self) -> None:
        """Run the whole range, then let time run to its end (timers due by then fire)."""
        replayer, from_ms, to_ms = self.replayer, self.time_range.from_ms, self.time_range.to_ms
        self._fill(lambda b: b.first_key is not None)
        next_ms = self._swap([], replayer.next_time())[1]
        previous: int | None = None
        collected_at = 0
        with gc_paused() if self.pause_gc else contextlib.nullcontext():  # see COLLECT_EVERY_RECORDS
            while next_ms is not None:
                index = (next_ms - from_ms) // self.slice_ms
                if previous is not None and index <= previous:
                    index = previous + 1
                end_ms = from_ms + (index + 1) * self.slice_ms
                self._fill(_ready_for(end_ms))
                horizon_ms = min(end_ms, to_ms)
                outgoing = replayer.run_slice(end_ms, horizon_ms)
                received, next_ms = self._swap(outgoing, replayer.next_time())
                replayer.evaluate(horizon_ms, received)
                previous = index
                if self.pause_gc and replayer.counts.events - collected_at >= COLLECT_EVERY_RECORDS:
                    collected_at = replayer.counts.events
                    collect_young()
                if self.on_progress is not None:
                    self.on_progress(horizon_ms)
            received, _ = self._swap(replayer.finish(to_ms), None)
            replayer.evaluate(to_ms, received)
        if self.on_progress is not None:
            self.on_progress(to_ms)

    def _swap(self, outgoing: list[dict[int, list[Routed]]], next_ms: int | None
              ) -> tuple[list[list[list[Routed]]], int | None]:
        if self.exchange is None:
            return [], next_ms
        return self.exchange.swap(outgoing, next_ms)

    def _fill(self, enough: Callable[[PartitionBuffer], bool]) -> None:
        buffers = self.replayer.buffers
        while True:
            wanted = {p for p, b in buffers.items() if not b.finished and not enough(b)}
            if not wanted:
                return
            for p, records in self.source.poll(wanted).items():
                self.replayer.add(p, records)
            for p in wanted:
                if self.source.finished(p):
                    self.replayer.finished(p)
            if self.on_progress is not None:
                self.on_progress(None)


def _ready_for(end_ms: int) -> Callable[[PartitionBuffer], bool]:
    return lambda buffer: buffer.ready_for(end_ms)


def _ranges(settings: Settings, topic: str, time_range: TimeRange) -> list[PartitionRange]:
    consumer = make_consumer(settings, f"vigil-backtest-{uuid.uuid4().hex[:12]}")
    try:
        return find_ranges(consumer, topic, time_range.from_ms, time_range.to_ms)
    finally:
        consumer.close()


#: Records per process below which a default run stays in one (starting one costs about a second).
RECORDS_PER_PROCESS: Final = 50_000


def _processes(requested: int | None, ranges: Sequence[PartitionRange]) -> int:
    with_records = sum(1 for r in ranges if r.size > 0)
    if requested is None:
        requested = min(os.cpu_count() or 1, sum(r.size for r in ranges) // RECORDS_PER_PROCESS)
    return max(1, min(requested, with_records))


def run_backtest(settings: Settings, request: BacktestRequest, *,
                 progress: Progress | None = None) -> BacktestResult:
    """Backtest the rule set(s) of `request` over its range of history (see the module docstring).
    Raises RulesInvalidError before anything is read when a rule directory has errors, SourceError
    when the topic cannot be read."""
    check_rule_dirs(request.rules_dirs)
    started = time.perf_counter()
    topic = settings.topic(request.topic)
    ranges = _ranges(settings, topic, request.time_range)
    result = BacktestResult(request, partitions=len(ranges))
    if not any(r.size for r in ranges):
        result.elapsed_s = time.perf_counter() - started
        return result
    processes = _processes(request.processes, ranges)
    result.processes = processes
    if progress is not None:
        progress.begin(sum(r.size for r in ranges))
    if processes > 1:
        from app.backtest.parallel import run_parallel

        run_parallel(settings, request, ranges, processes, result, progress=progress)
    else:
        _run_single(settings, request, topic, ranges, result, progress)
    result.actions = sort_actions(result.actions)
    result.elapsed_s = time.perf_counter() - started
    return result


def _run_single(settings: Settings, request: BacktestRequest, topic: str, ranges: list[PartitionRange],
                result: BacktestResult, progress: Progress | None) -> None:
    restore_gc = tune_for_streams() if request.tune_gc else None
    try:
        _run_in_process(settings, request, topic, ranges, result, progress)
    finally:
        if restore_gc is not None:
            restore_gc()


def _run_in_process(settings: Settings, request: BacktestRequest, topic: str, ranges: list[PartitionRange],
                    result: BacktestResult, progress: Progress | None) -> None:
    replayer = build_replayer(PipelineConfig.from_settings(settings), request.rules_dirs,
                              partitions=[r.partition for r in ranges],
                              rules_state_retention_ms=settings.rules_state_retention_ms)
    reader = HistoryReader(settings, topic, ranges, keep=subject_filter(request.subject))
    position: list[int | None] = [None]

    def on_progress(horizon_ms: int | None) -> None:
        if horizon_ms is not None:
            position[0] = horizon_ms
        if progress is not None:
            progress.update(done(replayer, reader.counts), position[0])

    try:
        SliceDriver(replayer, reader, time_range=request.time_range, slice_ms=request.slice_ms,
                    on_progress=on_progress, pause_gc=request.tune_gc).run()
    finally:
        reader.close()
    merge_into(result, replayer.actions, replayer.counts, reader.counts.records, reader.counts.filtered,
               reader.counts.unreadable, reader.counts.listed)


def done(replayer: Replayer, read: ReadCounts) -> int:
    """Records dealt with so far: run through the replay, or skipped (unreadable, not --subject)."""
    return replayer.counts.events + read.filtered + read.unreadable


def merge_into(result: BacktestResult, actions: Sequence[FiredAction], counts: RunCounts, read: int, filtered: int,
               unreadable: int, listed: Sequence[Unreadable]) -> None:
    """Add one process's findings to a result."""
    result.actions.extend(actions)
    result.counts.events += counts.events
    result.counts.alerts += counts.alerts
    result.counts.windows += counts.windows
    for total, part in ((result.counts.rejected, counts.rejected), (result.counts.agent_errors, counts.agent_errors)):
        total.update(part)
    result.counts.render_failures.update(counts.render_failures)
    result.counts.suppressed.update(counts.suppressed)
    result.read += read
    result.filtered += filtered
    result.unreadable += unreadable
    result.unreadable_listed = sorted([*result.unreadable_listed, *listed],
                                      key=lambda u: (u.partition, u.offset))[:100]

