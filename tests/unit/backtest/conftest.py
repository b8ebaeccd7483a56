"""Factories for backtest unit tests: events as the worker decodes them, rules from inline YAML, and
a replay of events through the real pipeline and rules stage in memory (no Kafka)."""

from __future__ import annotations

import itertools
import queue
import textwrap
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.backtest.parallel import QueueExchange
from app.backtest.replayer import FiredAction
from app.backtest.run import DEFAULT_SLICE_MS, SliceDriver, build_replayer, sort_actions
from app.backtest.source import MemorySource
from app.backtest.times import TimeRange
from app.model.ids import deterministic_id
from app.pipeline.config import PipelineConfig
from app.runtime.engine import InRecord
from app.runtime.testing import partition_for

S = 1000
T0 = 1_700_000_000_000


def event(subject: str = "web1", name: str = "load", at_s: float = 0, **fields: Any) -> dict[str, Any]:
    """A vigil.Event as the worker decodes it, at T0 + at_s seconds, with an id from its content."""
    time_ms = T0 + round(at_s * S)
    record: dict[str, Any] = {
        "id": deterministic_id("test", subject, name, str(time_ms)), "time": time_ms, "subject": subject,
        "name": name, "kind": "STATUS", "severity": 0, "origin": "", "text": "", "tags": {}, "metrics": {},
        "ttl": None, "extended": None, "trace_id": None}
    record.update(fields)
    return record


def rules_dir(base: Path, text: str, name: str = "rules") -> Path:
    """A rules directory holding `text` (a YAML rule file, dedented)."""
    directory = base / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(textwrap.dedent(text))
    return directory


def partitioned(events: Iterable[dict[str, Any]], partitions: int) -> dict[int, list[InRecord]]:
    """Records per partition as a producer keyed by identity would have put them (offset order =
    the order given; Kafka timestamp = event time)."""
    out: dict[int, list[InRecord]] = {p: [] for p in range(partitions)}
    for value in events:
        key = f"{value['subject']}/{value['name']}"
        p = partition_for(key, partitions)
        offset = len(out[p])
        out[p].append(InRecord(key, value, offset, value["time"], "vigil.Event", f"{p}:{offset}".encode(),
                               key.encode()))
    return out


def replay(directories: list[Path], events: list[dict[str, Any]], *, until_s: float | None = None,
           partitions: int = 3, slice_ms: int = DEFAULT_SLICE_MS, workers: int = 1,
           config: PipelineConfig | None = None, share: bool = True) -> list[FiredAction]:
    """The would-be actions of `events` (in this offset order) under the rules of `directories`,
    time run to T0 + until_s (default: the last event), in `workers` replays (threads exchanging
    through queues, as processes do); `share`: two rule sets evaluate their common rules once
    (app.backtest.sharing)."""
    records = partitioned(events, partitions)
    times = [e["time"] for e in events] or [T0]
    time_range = TimeRange(min(times), T0 + round(until_s * S) if until_s is not None else max(times))
    pipeline_config = config or PipelineConfig.model_validate({})
    if workers == 1:
        replayer = build_replayer(pipeline_config, directories, partitions=list(records), share=share)
        SliceDriver(replayer, MemorySource(records), time_range=time_range, slice_ms=slice_ms).run()
        return sort_actions(replayer.actions)
    inboxes: list[Any] = [queue.Queue() for _ in range(workers)]
    found: list[list[FiredAction]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            mine = {p: rs for p, rs in records.items() if p % workers == worker}
            replayer = build_replayer(pipeline_config, directories, partitions=list(mine), worker=worker,
                                      workers=workers, share=share)
            SliceDriver(replayer, MemorySource(mine), time_range=time_range, slice_ms=slice_ms,
                        exchange=QueueExchange(worker, inboxes, len(replayer.rulesets))).run()
            found[worker] = replayer.actions
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return sort_actions(list(itertools.chain.from_iterable(found)))


def fired(actions: list[FiredAction]) -> list[tuple[str, str, float]]:
    """(rule, target, seconds after T0) of each action, in report order."""
    return [(a.rule, a.target, (a.time_ms - T0) / S) for a in actions]
