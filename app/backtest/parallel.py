"""A backtest over several processes: each reads some partitions of the range (its own consumer),
runs them through the pipeline and the route agents, and evaluates the groups whose repartition
key it owns (`owner_of`: the key's CRC32, as Kafka would place it). Between slices every process
sends each other one message (what it routed to that one, and the event time of its next record)
and waits for theirs: the slice's evaluation then has every routed record of its groups, and all
agree where the next slice is. Results equal a single process's (app.backtest.replayer says why).

Processes are started with `spawn` (no fork of a process that may run threads: a registry server,
Kafka clients); each builds its own stages from the settings. The parent gathers progress and the
results, and stops every process when one fails.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time
import traceback
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from typing import Any, Final

from app.backtest.replayer import FiredAction, Routed, RunCounts
from app.backtest.run import BacktestRequest, BacktestResult, Progress, SliceDriver, build_replayer, done, merge_into
from app.backtest.source import HistoryReader, PartitionRange, ReadCounts, subject_filter
from app.config import Settings
from app.pipeline.config import PipelineConfig
from app.runtime.gctune import tune_for_streams

__all__ = ["BacktestFailed", "QueueExchange", "run_parallel"]

log = logging.getLogger(__name__)

#: How often a process reports its progress to the parent.
_PROGRESS_EVERY_S: Final = 0.5
_POLL_S: Final = 1.0


class BacktestFailed(RuntimeError):
    """A process of a parallel backtest failed; the message has its error."""


@dataclass(frozen=True)
class _Plan:
    settings: Settings
    request: BacktestRequest
    topic: str
    ranges: tuple[PartitionRange, ...]
    worker: int
    workers: int


class QueueExchange:
    """The meeting between slices, over one inbound queue per process (see the module docstring)."""

    def __init__(self, worker: int, inboxes: list[Any], rulesets: int) -> None:
        self.worker = worker
        self.inboxes = inboxes
        self.rulesets = rulesets
        self._step = 0
        #: messages of a later step that arrived early: step -> [(sender, next_ms, payload)]
        self._early: dict[int, list[tuple[int, int | None, list[list[Routed]]]]] = {}
        self._parent = os.getppid()

    def swap(self, outgoing: list[dict[int, list[Routed]]], next_ms: int | None
             ) -> tuple[list[list[list[Routed]]], int | None]:
        step = self._step
        self._step += 1
        for other in range(len(self.inboxes)):
            if other != self.worker:
                payload = [by_owner.get(other, []) for by_owner in outgoing] if outgoing else \
                    [[] for _ in range(self.rulesets)]
                self.inboxes[other].put((step, self.worker, next_ms, payload))
        got = self._early.pop(step, [])
        while len(got) < len(self.inboxes) - 1:
            try:
                msg_step, sender, their_next, payload = self.inboxes[self.worker].get(timeout=_POLL_S)
            except queue.Empty:
                if os.getppid() != self._parent:
                    raise BacktestFailed("the backtest's parent process is gone") from None
                continue
            if msg_step == step:
                got.append((sender, their_next, payload))
            else:
                self._early.setdefault(msg_step, []).append((sender, their_next, payload))
        nexts = [n for n in (next_ms, *(g[1] for g in got)) if n is not None]
        return [g[2] for g in sorted(got, key=lambda g: g[0])], min(nexts) if nexts else None


def _worker_main(plan: _Plan, inboxes: list[Any], results: Any) -> None:
    """One process of a parallel backtest (module docstring); reports to `results`."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("app.rules.stage").setLevel(logging.ERROR)  # live-stage notices (signing, silences)
    reader: HistoryReader | None = None
    try:
        mine = [r for i, r in enumerate(plan.ranges) if i % plan.workers == plan.worker]
        request = plan.request
        replayer = build_replayer(PipelineConfig.from_settings(plan.settings), request.rules_dirs,
                                  partitions=[r.partition for r in mine], worker=plan.worker, workers=plan.workers,
                                  rules_state_retention_ms=plan.settings.rules_state_retention_ms)
        reader = HistoryReader(plan.settings, plan.topic, mine, keep=subject_filter(request.subject))
        if request.tune_gc:
            tune_for_streams()  # this process's own: nothing to restore
        last = [0.0, None]

        def on_progress(horizon_ms: int | None) -> None:
            if horizon_ms is not None:
                last[1] = horizon_ms
            now = time.monotonic()
            if now - float(last[0] or 0.0) >= _PROGRESS_EVERY_S:
                last[0] = now
                counts = reader.counts if reader is not None else ReadCounts()
                results.put(("progress", plan.worker, done(replayer, counts), last[1]))

        exchange = QueueExchange(plan.worker, inboxes, len(replayer.rulesets))
        SliceDriver(replayer, reader, time_range=request.time_range, slice_ms=request.slice_ms, exchange=exchange,
                    on_progress=on_progress, pause_gc=request.tune_gc).run()
        counts = reader.counts
        results.put(("done", plan.worker, replayer.actions, replayer.counts, counts.records, counts.filtered,
                     counts.unreadable, counts.listed))
    except BaseException:
        results.put(("error", plan.worker, traceback.format_exc()))
    finally:
        if reader is not None:
            reader.close()


def run_parallel(settings: Settings, request: BacktestRequest, ranges: list[PartitionRange], workers: int,
                 result: BacktestResult, *, progress: Progress | None = None) -> None:
    """Run the backtest in `workers` processes over `ranges`, adding what they find to `result`."""
    context = multiprocessing.get_context("spawn")
    inboxes = [context.Queue() for _ in range(workers)]
    results = context.Queue()
    topic = settings.topic(request.topic)
    processes: list[SpawnProcess] = [
        context.Process(target=_worker_main, name=f"vigil-backtest-{i}", daemon=True,
                        args=(_Plan(settings, request, topic, tuple(ranges), i, workers), inboxes, results))
        for i in range(workers)]
    for process in processes:
        process.start()
    read: dict[int, int] = {}
    positions: dict[int, int | None] = {}
    finished: set[int] = set()
    try:
        while len(finished) < workers:
            try:
                message = results.get(timeout=_POLL_S)
            except queue.Empty:
                _check_alive(processes, finished)
                continue
            kind, worker = message[0], message[1]
            if kind == "progress":
                read[worker], positions[worker] = message[2], message[3]
                if progress is not None:
                    known = [p for p in positions.values() if p is not None]
                    progress.update(sum(read.values()), min(known) if len(known) == workers else None)
            elif kind == "done":
                actions: list[FiredAction] = message[2]
                counts: RunCounts = message[3]
                merge_into(result, actions, counts, *message[4:])
                finished.add(worker)
            else:
                raise BacktestFailed(f"backtest process {worker} failed:\n{message[2]}")
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None and len(finished) < workers:
                process.terminate()
        for process in processes:
            process.join(30)
        for q in (*inboxes, results):
            q.close()
            q.join_thread()


def _check_alive(processes: list[SpawnProcess], finished: set[int]) -> None:
    for i, process in enumerate(processes):
        if i not in finished and not process.is_alive():
            raise BacktestFailed(f"backtest process {i} exited with code {process.exitcode} before it finished")
