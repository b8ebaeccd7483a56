"""Soak benchmark: churning identities through the worker's stages, state size and memory over time,
with state expiry on and off.

    python benchmarks/soak.py [--identities 1000000] [--alive 10000] [--json]

A fleet of short-lived containers: identity i (subject `c<i>`, name `load`, or `heartbeat` for one
in ten) is born at i / rate and sends `--events` events `--interval` apart, then never again, so
`--alive` identities live at any time while `--identities` distinct ones pass through. Load
metrics cross a rule's threshold now and then (register state, throttles), a fiftieth report
CRITICAL (count state), heartbeats carry a ttl and an `absent_for` rule watches them (every dead
container's absence fires: pipeline and rule absence alerts are owed before its state may go).

Kafka-free, through the code a backtest runs (app.backtest: the worker's Pipeline and RulesStage
on the runtime Engine, in event time), with the tables a backtest keeps (identities, rule state,
timers; not the query-only archive and closed-window indexes, bounded by their own retention in
hour buckets) in RocksDB on disk, committed as a worker commits. Each mode runs in its own process:
- `expiry`: pipeline.state_retention and rules_state_retention = `--retention`;
- `off`: both 0 (kept forever, as before expiry existed).
Sampled `--samples` times: live rows per table (exact), RocksDB size on disk, RSS, and the
Python heap's allocated blocks (what Python objects hold, without RocksDB's own memory). `flat_ratio`
is the mean of the last quarter of samples over the mean of the first quarter (1.0: flat). The
default retention (20 s, throttles 30 s) is short so that a run spans many retentions of event
time; a heartbeat's absence (30 s) outlasts it, so absences hold their state until they fire.

With --json the last stdout line is the result object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Final

from common import REPO, emit_json, log

from app.backtest.run import build_replayer
from app.backtest.stores import DiscardBackend, StatePolicy
from app.durations import format_duration_ms, parse_duration_ms
from app.pipeline.config import PipelineConfig
from app.runtime.backends import MemoryBackend, RocksBackend, StoreBackend
from app.runtime.engine import InRecord
from app.runtime.tables import Table

__all__ = ["RULES", "fleet_slice"]

RULES = """
rules:
  - name: load-high
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 30s}
    when: {gt: 90}
    throttle: {once_within: 30s}
    actions: [{print: {}}]
  - name: criticals
    match: {severity: {ge: 2}}
    count: {at_least: 2, within: 20s}
    throttle: {once_within: 30s}
    actions: [{print: {}}]
  - name: heartbeat-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 30s
    actions: [{print: {}}]
"""
PARTITIONS = 4
#: RocksDB memtable per table partition. The worker's default (64 MiB) holds a short run's writes in
#: memory, so RSS would measure how full the memtables are, not the state; smaller ones flush early.
WRITE_BUFFER_BYTES = 4 << 20
SLICE_MS = 5_000


def _event(i: int, k: int, time_ms: int) -> dict[str, Any]:
    heartbeat = i % 10 == 0
    return {"id": f"{i}-{k}", "time": time_ms, "subject": f"c{i:07d}", "name": "heartbeat" if heartbeat else "load",
            "kind": "METRIC", "severity": 2 if i % 50 == 1 else 0, "origin": "soak", "text": "",
            "tags": {"class": f"k{i % 7}"}, "metrics": {"load1": float((i * 7 + k * 13) % 100)},
            "ttl": 30.0 if heartbeat else None, "extended": None, "trace_id": None}


def fleet_slice(start_ms: int, end_ms: int, *, identities: int, per_ms: float, events: int,
                interval_ms: int) -> list[tuple[int, dict[str, Any]]]:
    """(time, event) of every event in [start_ms, end_ms), in time order: identity i is born at
    i / per_ms and sends `events` events `interval_ms` apart."""
    out: list[tuple[int, dict[str, Any]]] = []
    for k in range(events):
        lo = max(0, -int(-(start_ms - k * interval_ms) * per_ms))  # ceil
        hi = min(identities, -int(-(end_ms - k * interval_ms) * per_ms))
        for i in range(lo, hi):
            t = int(i / per_ms) + k * interval_ms
            if start_ms <= t < end_ms:
                out.append((t, _event(i, k, t)))
    out.sort(key=lambda pair: pair[0])
    return out


#: Tables that only answer queries (app.backtest.replayer.query_only_tables): bounded by their own
#: time retention in hour buckets, they are dropped here as in every backtest.
QUERY_ONLY: Final = ("event-ids", "event-find", "metric-windows")


class _DiskPolicy(StatePolicy):
    """The tables a backtest keeps, in RocksDB under `root` (state as a worker keeps it), or in
    memory (`in_memory`: as a backtest keeps it; RSS then holds the state itself)."""

    def __init__(self, root: Path, *, in_memory: bool = False) -> None:
        super().__init__(())
        self.root = root
        self.in_memory = in_memory
        self.backends: dict[tuple[str, int], RocksBackend | MemoryBackend] = {}

    def backend(self, table: Table, partition: int) -> StoreBackend:
        if table.name in QUERY_ONLY:
            self.discarded.add(table)
            table.cache_limit = 0
            return DiscardBackend()
        backend: RocksBackend | MemoryBackend = (
            MemoryBackend() if self.in_memory
            else RocksBackend(self.root / f"{table.name}-{partition}", write_buffer_bytes=WRITE_BUFFER_BYTES))
        self.backends[(table.name, partition)] = backend
        return backend

    def rows(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (name, _), backend in self.backends.items():
            counts[name] = counts.get(name, 0) + sum(1 for key, _ in backend.iterate() if not key.startswith(b"\0\0"))
        return counts


def _disk_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_mode(args: argparse.Namespace, retention_ms: int) -> dict[str, Any]:
    """One soak run in this process; returns its samples."""
    import logging

    logging.getLogger("app").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    rules_dir = root / "rules"
    rules_dir.mkdir()
    (rules_dir / "soak.yaml").write_text(RULES)
    retention_text = format_duration_ms(retention_ms) if retention_ms else 0
    config = PipelineConfig.model_validate({"state_retention": retention_text})
    policy = _DiskPolicy(root / "state", in_memory=args.backend == "memory")
    replayer = build_replayer(config, [rules_dir], partitions=range(PARTITIONS), rules_state_retention_ms=retention_ms,
                              policy=policy)
    per_ms = args.alive / ((args.events - 1) * args.interval_ms + 1)  # births per ms keeping `alive` alive
    span_ms = int(args.identities / per_ms) + args.events * args.interval_ms
    sample_every = span_ms // args.samples
    offsets = [0] * PARTITIONS
    samples: list[dict[str, Any]] = []
    events = actions = 0
    started = time.perf_counter()
    next_sample = sample_every
    for start in range(0, span_ms, SLICE_MS):
        end = start + SLICE_MS
        by_partition: dict[int, list[InRecord]] = {}
        for t, value in fleet_slice(start, end, identities=args.identities, per_ms=per_ms, events=args.events,
                                    interval_ms=args.interval_ms):
            key = f"{value['subject']}/{value['name']}"
            p = zlib.crc32(key.encode()) % PARTITIONS
            by_partition.setdefault(p, []).append(InRecord(key, value, offsets[p], t, "vigil.Event",
                                                           value["id"].encode(), key.encode()))
            offsets[p] += 1
            events += 1
        for p, records in by_partition.items():
            replayer.add(p, records)
        replayer.run_slice(end, end)
        replayer.evaluate(end)
        for ruleset in replayer.rulesets:  # the would-be actions are output, not state: count and drop them
            actions += len(ruleset.actions)
            ruleset.actions.clear()
        if end >= next_sample or end >= span_ms:
            next_sample += sample_every
            replayer.commit()
            rows = policy.rows()
            sample = {"event_time_s": end // 1000, "events": events, "born": min(args.identities, int(end * per_ms)),
                      "rows": sum(rows.values()), "rows_by_table": rows, "disk_bytes": _disk_bytes(policy.root),
                      "rss_bytes": _rss_bytes(), "py_blocks": sys.getallocatedblocks(),
                      "expired": dict(replayer.pipeline.tracker.expiry.counts),
                      "rules_expired": dict(replayer.rulesets[0].stage.expiry.counts),
                      "elapsed_s": round(time.perf_counter() - started, 1)}
            samples.append(sample)
            log(f"  {sample['born']:>9,} born  {sample['rows']:>9,} rows  {sample['disk_bytes'] / 1e6:8.1f} MB disk  "
                f"{sample['rss_bytes'] / 1e6:8.1f} MB rss  {sample['elapsed_s']:7.1f}s")
    shutil.rmtree(root, ignore_errors=True)
    return {"samples": samples, "events": events, "actions": actions, "alerts": replayer.counts.alerts,
            "elapsed_s": round(time.perf_counter() - started, 1)}


def _quartiles(samples: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """The field at 25/50/75/100% of the run and the flat ratio (last quarter mean / first quarter mean)."""
    values = [s[field] for s in samples]
    n = len(values)
    at = {f"{q}%": values[max(0, round(n * q / 100) - 1)] for q in (25, 50, 75, 100)}
    quarter = max(1, n // 4)
    first = sum(values[:quarter]) / quarter
    last = sum(values[-quarter:]) / quarter
    # flat_ratio: last quarter's mean over the first's (the first holds the warm-up: lifetime plus
    # retention, about 2 * alive / identities of the run); at_100_over_25: the value at the end over
    # the value at a quarter of the run (past the warm-up)
    return {**at, "flat_ratio": round(last / first, 3) if first else None,
            "at_100_over_25": round(at["100%"] / at["25%"], 3) if at["25%"] else None}


def _child(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--mode", mode, "--identities", str(args.identities), "--alive",
            str(args.alive), "--events", str(args.events), "--interval", str(args.interval_ms // 1000),
            "--retention", str(args.retention_ms // 1000), "--samples", str(args.samples), "--backend", args.backend]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    samples = run["samples"]
    last = samples[-1]
    return {"rows": _quartiles(samples, "rows"), "rss_mb": {k: (round(v / 1e6, 1) if isinstance(v, int) else v)
                                                            for k, v in _quartiles(samples, "rss_bytes").items()},
            "disk_mb": {k: (round(v / 1e6, 1) if isinstance(v, int) else v)
                        for k, v in _quartiles(samples, "disk_bytes").items()},
            "py_blocks": _quartiles(samples, "py_blocks"),
            "rows_by_table_end": last["rows_by_table"], "expired": last["expired"],
            "rules_expired": last["rules_expired"], "events": run["events"], "alerts": run["alerts"],
            "actions": run["actions"], "elapsed_s": run["elapsed_s"],
            "events_per_s": round(run["events"] / run["elapsed_s"]) if run["elapsed_s"] else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=1_000_000, help="distinct identities passing through")
    parser.add_argument("--alive", type=int, default=10_000, help="identities alive at any time")
    parser.add_argument("--events", type=int, default=2, help="events per identity (at least 2)")
    parser.add_argument("--interval", type=float, default=20, help="seconds between an identity's events")
    parser.add_argument("--retention", type=float, default=20, help="state retention in seconds (expiry mode)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--backend", choices=("rocksdb", "memory"), default="rocksdb",
                        help="where state lives: RocksDB on disk (as in a worker) or memory (as in a backtest)")
    parser.add_argument("--mode", choices=("expiry", "off"), help="run one mode here (the parent runs both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.events < 2:
        parser.error("--events must be at least 2")
    args.interval_ms = parse_duration_ms(args.interval)
    args.retention_ms = parse_duration_ms(args.retention)
    if args.mode is not None:
        print(json.dumps(run_mode(args, args.retention_ms if args.mode == "expiry" else 0)))
        return
    log(f"soak: {args.identities:,} identities, {args.alive:,} alive, {args.events} events each, "
        f"retention {format_duration_ms(args.retention_ms)}")
    result: dict[str, Any] = {"identities": args.identities, "alive": args.alive, "events_per_identity": args.events,
                              "retention_s": args.retention_ms // 1000, "backend": args.backend}
    for mode in ("expiry", "off"):
        log(f"mode {mode}:")
        result[mode] = _summary(_child(args, mode))
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
