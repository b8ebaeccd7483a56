"""Backtest core benchmark without Kafka: the dataset of benchmarks/backtest.py encoded with Vigil's
serde (an in-memory schema registry), then, in one process and the same run,

Rates are per CPU second of this process (the machine is shared: wall-clock rates would measure the
share of the cores a run got).

- raw: Vigil's decoder + a dict update per record (the raw limit without the consumer);
- backtest: decode into records per partition + the backtest core (Replayer through SliceDriver
  over a MemorySource: the worker's pipeline and rules stage) with the 20 rules of RULES_A;
- compare: the same with RULES_A and RULES_B.

    python benchmarks/backtest_core.py [--events 200000] [--profile FILE] [--only backtest|compare]

For profiling the shared code (`--profile out.prof` writes cProfile stats of the backtest run;
`py-spy record -- python benchmarks/backtest_core.py` works too). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from backtest import RULES_A, RULES_B, _event
from common import emit_json, log

from app.backtest.run import SliceDriver, build_replayer
from app.backtest.source import MemorySource
from app.backtest.times import TimeRange
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.pipeline.config import PipelineConfig
from app.runtime.engine import InRecord
from app.runtime.gctune import tune_for_streams
from app.runtime.testing import partition_for

__all__ = ["MemoryRegistry", "main"]

PARTITIONS = 6


class MemoryRegistry:
    """A SchemaSource in memory (ids from 1 in registration order)."""

    def __init__(self) -> None:
        self.schemas: list[str] = []

    def register(self, subject: str, schema: str) -> int:
        if schema not in self.schemas:
            self.schemas.append(schema)
        return self.schemas.index(schema) + 1

    def schema_by_id(self, schema_id: int) -> str:
        return self.schemas[schema_id - 1]


def _dataset(serde: AvroSerde, events: int, identities: int, event_rate: float, seed: int = 7
             ) -> tuple[dict[int, list[tuple[bytes, bytes, int]]], int, int]:
    """(partition -> [(key, value bytes, timestamp)]), first and last event time: the benchmark's fleet."""
    writer = serde.writer(builtin_schema("vigil.Event"))
    rng = random.Random(seed)
    step_ms = 1000.0 / event_rate
    start_ms = 1_760_000_000_000
    silent_hosts = {h for h in range(1000) if h % 20 == 0}
    out: dict[int, list[tuple[bytes, bytes, int]]] = {p: [] for p in range(PARTITIONS)}
    for i in range(events):
        ident = rng.randrange(identities)
        at_ms = start_ms + int(i * step_ms)
        ev = _event(rng, ident, at_ms, i > events // 2 and ident % 1000 in silent_hosts)
        if ev is None:
            ev = Event(subject=f"host-{ident % 1000}", name="load", time=at_ms, metrics={"load1": 1.0},
                       tags={"class": "client"})
        key = ev.key.encode()
        out[partition_for(key, PARTITIONS)].append((key, writer.encode(ev.to_record()), ev.time))
    return out, start_ms, start_ms + int((events - 1) * step_ms)


def _raw(serde: AvroSerde, data: dict[int, list[tuple[bytes, bytes, int]]]) -> float:
    started = time.process_time()
    decode = serde.decode
    sums: dict[bytes, float] = {}
    n = 0
    for records in data.values():
        for key, value, _ts in records:
            record = decode(value)
            sums[key] = sums.get(key, 0.0) + record["metrics"].get("load1", 0.0)
            n += 1
    return n / (time.process_time() - started)


def _backtest(serde: AvroSerde, data: dict[int, list[tuple[bytes, bytes, int]]], dirs: list[Path],
              time_range: TimeRange, profile: str | None) -> tuple[float, int]:
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    decode = serde.decode_typed
    records: dict[int, list[InRecord]] = {}
    for p, rows in data.items():
        out = records[p] = []
        for offset, (key, value, ts) in enumerate(rows):
            type_name, decoded = decode(value)
            out.append(InRecord(key.decode(), decoded, offset, ts, type_name, value, key))
    replayer = build_replayer(PipelineConfig.model_validate({}), dirs, partitions=list(records))
    SliceDriver(replayer, MemorySource(records), time_range=time_range).run()
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    elapsed = time.process_time() - started
    return sum(len(r) for r in data.values()) / elapsed, len(replayer.actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--event-rate", type=float, default=1000.0)
    parser.add_argument("--only", choices=("backtest", "compare"), default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats of the (first) backtest run here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("app.rules.stage").setLevel(logging.ERROR)
    tune_for_streams()
    serde = AvroSerde(MemoryRegistry())
    started = time.perf_counter()
    data, first_ms, last_ms = _dataset(serde, args.events, args.identities, args.event_rate)
    log(f"dataset of {args.events:,} events encoded in {time.perf_counter() - started:.1f}s")
    time_range = TimeRange(first_ms, last_ms + 60_000)
    result: dict[str, Any] = {"events": args.events}
    result["raw_eps"] = _raw(serde, data)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-core-") as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        for directory, text in ((a, RULES_A), (b, RULES_B)):
            directory.mkdir()
            (directory / "rules.yaml").write_text(text)
        if args.only in (None, "backtest"):
            result["backtest_eps"], result["actions"] = _backtest(serde, data, [a], time_range, args.profile)
            result["ratio"] = round(result["backtest_eps"] / result["raw_eps"], 3)
        if args.only in (None, "compare"):
            profile = args.profile if args.only == "compare" else None
            result["backtest_compare_eps"], _ = _backtest(serde, data, [a, b], time_range, profile)
        if args.only is None:
            result["compare_slowdown"] = round(result["backtest_eps"] / result["backtest_compare_eps"], 3)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
