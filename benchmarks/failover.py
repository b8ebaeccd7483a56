"""Failover benchmark (issue 21): real `vigil worker` processes under a steady load, killed and
restarted, plus the cold restore rate of a large table against a plain consumer.

    python benchmarks/failover.py [--workers 3] [--partitions 12] [--identities 10000] [--rate 5000]
                                  [--session-timeout-ms 45000] [--standby-replicas 2]
                                  [--restore-mb 1024] [--skip failover,standby,restore] [--quick] [--json]

The workers run the agent of benchmarks/failover_agent.py (a count per identity in a changelogged
table, one output per event naming its source partition and event id), exactly-once by default.
A load generator (its own process) produces vigil.Event records at `--rate` events/s keyed over
`--identities` identities, with the event's sequence number as its id. An output reader
(read_committed) notes when each source partition's outputs arrive and counts every event id.

Scenario 1, no standby replicas (fresh topics and state):
- max throughput: with the workers assigned and ready, they are frozen (SIGSTOP), a backlog of
  `--backlog` events is produced, they go on (SIGCONT): events/s from the first output after that
  to the last of the backlog (`steady_eps_without_standby`);
- steady load at `--rate`; the workers' CPU (cores, from /proc) over `--cpu-window` s;
- (b) rolling restart: each worker in turn is stopped (SIGTERM) and started again with the same
  instance id and state dir, and the next one only once it is ready again: changelog records the
  restarted workers replayed (vigil_restored_records) and the longest pause between two outputs
  of any partition during it;
- (a) one worker is SIGKILLed: per partition it owned, the time from the kill until outputs
  arrive again (`failover_gap_s`, the largest; `failover_after_expiry_s` = that minus the session
  timeout), and the changelog records the heirs restored.
Scenario 2: the same with `--standby-replicas` (max throughput, CPU at load, the SIGKILL).
In each scenario, after the load stops, every event id produced must be in the outputs once:
`lost` (never seen) and `duplicates` (seen more than once, over all events of both scenarios).

(c) restore: a changelog of about `--restore-mb` MB (values of `--restore-value-bytes`, unique
keys, spread over the partitions) is produced straight to the table's changelog topic in the
worker's format (JSON values, the key as the table key); a plain confluent consumer reads it
(read_committed, fetching as the restore consumer does: `raw_mb_s`, `raw_records_s`), then a fresh
`vigil worker` with no local state restores it through its real restore path: the rate is read
from its /metrics (vigil_restored_records) until /readyz answers 200 (`restore_mb_s`,
`restore_records_s`, `restore_ratio` = restore / raw records/s).

Kafka: the stack from VIGIL_KAFKA_BOOTSTRAP/VIGIL_SCHEMA_REGISTRY_URL, else a throwaway one
(common.bench_stack). Human-readable lines go to stderr; with --json the last stdout line is the
result object. On a shared 2-core machine absolute figures are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import REPO, bench_stack, create_topic, emit_json, log
from confluent_kafka import KafkaError, TopicPartition

from app.bus.clients import make_consumer, make_producer, take_available
from app.config import Settings
from app.devstack.kafka import free_port
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.runtime.gctune import tune_for_streams
from app.runtime.worker.restore import RESTORE_FETCH_CONFIG

__all__ = ["OutputReader", "WorkerProcess", "first_output_after", "longest_pause"]

#: The issue's goals.
GOAL_AFTER_EXPIRY_S = 10.0
GOAL_RESTORE_RATIO = 0.7
SOURCE = "events"
OUT = "failover-out"
TABLE = "counts"  # benchmarks/failover_agent.py's table
#: The output reader keeps one arrival time per partition at most this often (the gap resolution).
ARRIVAL_RESOLUTION_S = 0.05
#: Outputs of a transaction the killed worker committed just before the kill can become visible a
#: moment after it: the failover gap ends at the first output later than this after the kill.
KILL_GRACE_S = 1.0
#: How often the restoring worker's /metrics is read (the restore's time resolution).
METRICS_POLL_S = 0.25


# -- pure analysis ------------------------------------------------------------------------------------
def first_output_after(arrivals: array, at_s: float) -> float | None:
    """The first arrival time later than `at_s` (arrivals ascending), or None."""
    lo, hi = 0, len(arrivals)
    while lo < hi:
        mid = (lo + hi) // 2
        if arrivals[mid] <= at_s:
            lo = mid + 1
        else:
            hi = mid
    return arrivals[lo] if lo < len(arrivals) else None


def longest_pause(arrivals: array, start_s: float, end_s: float) -> float:
    """The longest time between two consecutive arrivals, over the pauses that overlap
    [start_s, end_s] (a pause running past end_s counts up to its next arrival)."""
    longest = 0.0
    for i in range(1, len(arrivals)):
        before, after = arrivals[i - 1], arrivals[i]
        if after >= start_s and before <= end_s:
            longest = max(longest, after - before)
    return longest


def parse_metric(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (over its labels) in an exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def partition_of(name: str) -> int:
    """`topic[3]` (as /healthz lists partitions) -> 3."""
    return int(name.rsplit("[", 1)[1].rstrip("]"))


# -- load -------------------------------------------------------------------------------------------
def _event_writer(settings: Settings) -> Any:
    serde = AvroSerde(RegistryClient.from_settings(settings))
    return serde.writer(builtin_schema("vigil.Event"))


def _record(seq: int, identities: int, now_ms: int) -> tuple[dict[str, Any], bytes]:
    ident = seq % identities
    record = {"id": str(seq), "time": now_ms, "subject": f"fo-{ident}", "name": "check", "kind": "METRIC",
              "severity": 0, "origin": "bench", "text": "", "tags": {}, "metrics": {"v": 1.0}, "ttl": None,
              "extended": None, "trace_id": None}
    return record, f"fo-{ident}/check".encode()


def produce_range(settings: Settings, topic: str, first: int, count: int, identities: int) -> None:
    """Events `first` .. `first + count - 1` as fast as possible (acknowledged on return)."""
    writer = _event_writer(settings)
    producer = make_producer(settings, **{"linger.ms": 20})
    now_ms = int(time.time() * 1000)
    for seq in range(first, first + count):
        record, key = _record(seq, identities, now_ms)
        _produce(producer, topic, writer.encode(record), key)
        if seq % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the backlog was not acknowledged within 120 s")


def _produce(producer: Any, topic: str, value: bytes, key: bytes, partition: int = -1) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def _generate(settings: Settings, topic: str, first: int, rate_eps: float, identities: int, produced: Any,
              stop: Any) -> None:
    """The load generator (a process of its own): events from sequence number `first` at
    `rate_eps` until `stop` is set; `produced.value` is the next sequence number once all are
    acknowledged (-1 before)."""
    writer = _event_writer(settings)
    producer = make_producer(settings)  # as Vigil's bridges produce: linger 5 ms
    seq = first
    started = time.monotonic()
    while not stop.is_set():
        due = first + int((time.monotonic() - started) * rate_eps)
        now_ms = int(time.time() * 1000)
        while seq < due:
            record, key = _record(seq, identities, now_ms)
            _produce(producer, topic, writer.encode(record), key)
            seq += 1
        producer.poll(0)
        time.sleep(0.002)
    if producer.flush(120):
        raise RuntimeError("the load generator's events were not acknowledged within 120 s")
    produced.value = seq


class LoadGenerator:
    """A steady load in a separate process (so the benchmark's own work does not disturb it)."""

    def __init__(self, settings: Settings, topic: str, *, first: int, rate_eps: float, identities: int) -> None:
        ctx = mp.get_context("spawn")
        self._produced = ctx.Value("q", -1)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_generate, args=(settings, topic, first, rate_eps, identities,
                                                          self._produced, self._stop), daemon=True)
        self._proc.start()

    def stop(self) -> int:
        """Stop; returns the next sequence number (all before it acknowledged)."""
        self._stop.set()
        self._proc.join(180)
        if self._produced.value < 0:
            raise RuntimeError("the load generator failed (see above)")
        return int(self._produced.value)


# -- outputs ----------------------------------------------------------------------------------------
@dataclass
class OutputReader:
    """Reads the output topic (read_committed) in a thread: per source partition, the arrival times
    of its outputs (at most one per ARRIVAL_RESOLUTION_S), and how often each event id was seen."""

    settings: Settings
    topic: str
    partitions: int
    arrivals: list[array] = field(init=False)
    seen: bytearray = field(default_factory=bytearray)
    total: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _marks: dict[int, float] = field(default_factory=dict)
    _error: BaseException | None = None

    def __post_init__(self) -> None:
        self.arrivals = [array("d") for _ in range(self.partitions)]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as exc:
            self._error = exc
            raise

    def _read(self) -> None:
        consumer = make_consumer(self.settings, f"fo-read-{uuid.uuid4().hex[:6]}", **{
            "isolation.level": "read_committed", "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        arrivals, seen = self.arrivals, self.seen
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(5000, timeout=0.05)
                if not msgs:
                    continue
                now = time.time()
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    part, _, ident = msg.value().partition(b" ")
                    seq = int(ident)
                    if seq >= len(seen):
                        seen.extend(bytes(max(seq + 1 - len(seen), 1 << 20)))
                    if seen[seq] < 255:
                        seen[seq] += 1
                    times = arrivals[int(part)]
                    if not times or now - times[-1] >= ARRIVAL_RESOLUTION_S:
                        times.append(now)
                self.total += len(msgs)
                for target, at in list(self._marks.items()):
                    if at == 0.0 and self.total >= target:
                        self._marks[target] = now
        finally:
            consumer.close()

    def mark(self, total: int) -> None:
        """Note when the count of outputs reaches `total` (see `reached`)."""
        self._marks[total] = 0.0

    def reached(self, total: int) -> float:
        return self._marks.get(total, 0.0)

    def check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the output reader failed: {self._error}") from self._error

    def wait_complete(self, produced: int, *, quiet_s: float = 20.0, timeout_s: float = 600.0) -> None:
        """Wait until every event id below `produced` was seen, or nothing new came for `quiet_s`."""
        deadline = time.monotonic() + timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.check()
            if self.lost(produced) == 0:
                return
            if self.total != last:
                last, since = self.total, time.monotonic()
            elif time.monotonic() - since > quiet_s:
                return
            time.sleep(0.5)

    def lost(self, produced: int) -> int:
        """Event ids below `produced` never seen."""
        head = self.seen[:produced]
        return head.count(0) + max(0, produced - len(head))

    def duplicates(self, produced: int) -> int:
        """Outputs beyond the first of an event id."""
        return sum(n - 1 for n in self.seen[:produced] if n > 1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


# -- workers ----------------------------------------------------------------------------------------
@dataclass
class WorkerProcess:
    """A `vigil worker` subprocess running benchmarks/failover_agent.py, restartable with the same
    instance id and state dir."""

    settings: Settings
    app_id: str
    instance_id: str
    state_dir: Path
    log_path: Path
    guarantee: str
    session_timeout_ms: int
    standby_replicas: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "app", "--bootstrap", self.settings.kafka_bootstrap,
               "--registry", self.settings.schema_registry_url, "worker", "--no-builtins",
               "--plugins", "failover_agent", "--app-id", self.app_id, "--instance-id", self.instance_id,
               "--guarantee", self.guarantee, "--http", f"127.0.0.1:{self.port}",
               "--session-timeout-ms", str(self.session_timeout_ms),
               "--standby-replicas", str(self.standby_replicas), "--log-level", "INFO"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_API_TOKEN")}
        env.update({"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'benchmarks'}", "VIGIL_STATE_DIR": str(self.state_dir),
                    "VIGIL_TOPIC_PREFIX": self.settings.topic_prefix, "VIGIL_FAILOVER_SOURCE": SOURCE,
                    "VIGIL_FAILOVER_OUT": OUT})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, *, kill: bool = False, timeout_s: float = 120) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _get(self, path: str) -> httpx.Response | None:
        if not self.alive():
            raise RuntimeError(f"worker {self.instance_id} exited (see {self.log_path})")
        try:
            return httpx.get(f"{self.url}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    def health(self) -> dict[str, Any]:
        resp = self._get("/healthz")
        return dict(resp.json()) if resp is not None and resp.status_code == 200 else {}

    def ready(self) -> bool:
        resp = self._get("/readyz")
        return resp is not None and resp.status_code == 200

    def assigned(self) -> list[int]:
        return sorted(partition_of(p) for p in self.health().get("assigned", []))

    def metric(self, name: str) -> float:
        resp = self._get("/metrics")
        if resp is None or resp.status_code != 200:
            raise RuntimeError(f"worker {self.instance_id}: /metrics did not answer")
        return parse_metric(resp.text, name)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(condition: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


@dataclass
class Options:
    workers: int
    partitions: int
    identities: int
    rate_eps: float
    guarantee: str
    session_timeout_ms: int
    standby_replicas: int
    backlog: int
    warmup_s: float
    cpu_window_s: float
    settle_s: float


class Scenario:
    """Fresh topics (a new prefix), an output reader and `workers` worker processes."""

    def __init__(self, settings: Settings, opts: Options, home: Path, name: str, *, standby_replicas: int) -> None:
        self.opts = opts
        prefix = f"fo{uuid.uuid4().hex[:6]}-"
        self.settings = settings.model_copy(update={"topic_prefix": prefix})
        self.source = create_topic(self.settings, self.settings.topic(SOURCE), opts.partitions)
        self.out = create_topic(self.settings, self.settings.topic(OUT), opts.partitions)
        self.name = name
        app_id = f"failover-{name}"
        self.workers = [WorkerProcess(self.settings, app_id, f"w{i}", home / name / f"w{i}",
                                      home / f"{name}-w{i}.log", opts.guarantee, opts.session_timeout_ms,
                                      standby_replicas) for i in range(opts.workers)]
        self.reader = OutputReader(self.settings, self.out, opts.partitions)
        self.next_seq = 0
        self.load: LoadGenerator | None = None

    def start(self) -> None:
        self.reader.start()
        for w in self.workers:
            w.start()
        wait_for(self.balanced, 180, "every worker assigned and ready", interval_s=0.5)

    def balanced(self) -> bool:
        """Every partition assigned, evenly, and every worker ready."""
        counts = [len(w.assigned()) for w in self.workers]
        even = max(counts) - min(counts) <= 1 and sum(counts) == self.opts.partitions
        return even and all(w.ready() for w in self.workers)

    def max_eps(self) -> float:
        """Freeze the workers, produce a backlog, let them go: events/s from the first output after
        that to the last of the backlog."""
        n = self.opts.backlog
        for w in self.workers:
            w.signal(signal.SIGSTOP)
        try:
            base = self.reader.total
            produce_range(self.settings, self.source, self.next_seq, n, self.opts.identities)
            self.next_seq += n
            self.reader.mark(base + n)
        finally:
            resumed = time.time()
            for w in self.workers:
                w.signal(signal.SIGCONT)
        wait_for(lambda: self.reader.reached(base + n) > 0, 600, "the backlog processed", interval_s=0.1)
        # from SIGCONT: under exactly-once the first outputs become visible only with the first
        # commit, so timing from them would leave out the first transactions' work
        return n / (self.reader.reached(base + n) - resumed)

    def start_load(self) -> None:
        self.load = LoadGenerator(self.settings, self.source, first=self.next_seq, rate_eps=self.opts.rate_eps,
                                  identities=self.opts.identities)
        time.sleep(self.opts.warmup_s)

    def cpu_cores(self) -> float:
        """CPU cores the workers use together at the current load, over the CPU window."""
        before = sum(w.cpu_s() for w in self.workers)
        time.sleep(self.opts.cpu_window_s)
        return (sum(w.cpu_s() for w in self.workers) - before) / self.opts.cpu_window_s

    def restored(self) -> float:
        return sum(w.metric("vigil_restored_records_total") for w in self.workers if w.alive())

    def rolling_restart(self) -> dict[str, Any]:
        """(b) Restart each worker in turn (SIGTERM, start again, wait until ready with its
        partitions back): changelog records replayed, longest pause of any partition."""
        started = time.time()
        replayed = 0.0
        for w in self.workers:
            mine = w.assigned()
            w.stop()
            t0 = time.monotonic()
            w.start()
            wait_for(lambda w=w, mine=mine: w.assigned() == mine and w.ready(), 300,
                     f"{w.instance_id} back with partitions {mine}")
            replayed += w.metric("vigil_restored_records_total")
            log(f"  {w.instance_id} restarted and ready in {time.monotonic() - t0:.1f} s")
        ended = time.time()
        time.sleep(self.opts.settle_s)
        pause = max(longest_pause(a, started, ended) for a in self.reader.arrivals)
        return {"rolling_restart_replayed": int(replayed), "longest_pause_s": round(pause, 2),
                "rolling_restart_s": round(ended - started, 1)}

    def kill_one(self) -> dict[str, Any]:
        """(a) SIGKILL a worker: per partition it owned, time until outputs arrive again."""
        victim = self.workers[1]
        mine = victim.assigned()
        survivors = [w for w in self.workers if w is not victim]
        restored_before = sum(w.metric("vigil_restored_records_total") for w in survivors)
        killed_at = time.time()
        victim.stop(kill=True)
        session_s = self.opts.session_timeout_ms / 1000

        def back() -> bool:
            self.reader.check()
            return all(first_output_after(self.reader.arrivals[p], killed_at + KILL_GRACE_S) for p in mine)

        wait_for(back, session_s + 300, f"partitions {mine} producing output again", interval_s=0.5)
        gaps = {p: first_output_after(self.reader.arrivals[p], killed_at + KILL_GRACE_S) - killed_at  # type: ignore[operator]
                for p in mine}
        wait_for(lambda: all(w.ready() for w in survivors), 300, "the survivors ready")
        time.sleep(self.opts.settle_s)
        gap = max(gaps.values())
        return {"failover_gap_s": round(gap, 2), "failover_after_expiry_s": round(gap - session_s, 2),
                "failover_gaps_s": {str(p): round(g, 2) for p, g in sorted(gaps.items())},
                "takeover_restored": int(sum(w.metric("vigil_restored_records_total") for w in survivors)
                                         - restored_before)}

    def finish(self) -> dict[str, Any]:
        """Stop the load; every event produced must come out once."""
        assert self.load is not None
        produced = self.load.stop()
        self.reader.wait_complete(produced)
        return {"events": produced, "lost": self.reader.lost(produced),
                "duplicates": self.reader.duplicates(produced)}

    def close(self) -> None:
        if self.load is not None and self.load._proc.is_alive():
            self.load.stop()
        for w in self.workers:
            w.stop()
        self.reader.stop()


def run_without_standby(settings: Settings, opts: Options, home: Path) -> dict[str, Any]:
    sc = Scenario(settings, opts, home, "plain", standby_replicas=0)
    try:
        sc.start()
        out: dict[str, Any] = {"steady_eps_without_standby": round(sc.max_eps())}
        log(f"[no standby] max throughput: {out['steady_eps_without_standby']:,} ev/s")
        sc.start_load()
        out["worker_cpu_without_standby"] = round(sc.cpu_cores(), 3)
        log(f"[no standby] workers' CPU at {opts.rate_eps:,.0f} ev/s: {out['worker_cpu_without_standby']} cores")
        rolling = sc.rolling_restart()
        out.update(rolling)
        log(f"[no standby] rolling restart: {rolling}")
        kill = sc.kill_one()
        out.update({f"{k}_without_standby": v for k, v in kill.items()})
        log(f"[no standby] SIGKILL: {kill}")
        result = sc.finish()
        log(f"[no standby] {result}")
        out.update({f"{k}_without_standby": v for k, v in result.items()})
        return out
    finally:
        sc.close()


def run_with_standby(settings: Settings, opts: Options, home: Path) -> dict[str, Any]:
    sc = Scenario(settings, opts, home, "standby", standby_replicas=opts.standby_replicas)
    try:
        sc.start()
        # each worker keeps warm the partitions of the next `replicas` members of the ring
        keeps = opts.partitions // opts.workers * min(opts.standby_replicas, opts.workers - 1)
        wait_for(lambda: all(w.metric("vigil_standby_partitions") >= keeps for w in sc.workers), 120,
                 f"{keeps} standby partitions on every worker")
        out: dict[str, Any] = {"steady_eps_with_standby": round(sc.max_eps())}
        log(f"[standby] max throughput: {out['steady_eps_with_standby']:,} ev/s")
        sc.start_load()
        out["worker_cpu_with_standby"] = round(sc.cpu_cores(), 3)
        log(f"[standby] workers' CPU at {opts.rate_eps:,.0f} ev/s: {out['worker_cpu_with_standby']} cores")
        kill = sc.kill_one()
        out.update({f"{k}_with_standby": v for k, v in kill.items()})
        log(f"[standby] SIGKILL: {kill}")
        result = sc.finish()
        log(f"[standby] {result}")
        out.update({f"{k}_with_standby": v for k, v in result.items()})
        return out
    finally:
        sc.close()


# -- (c) restore --------------------------------------------------------------------------------------
def build_changelog(settings: Settings, topic: str, partitions: int, *, total_bytes: int,
                    value_bytes: int) -> tuple[int, int]:
    """Produce unique-key records of about `value_bytes` (JSON as the table's codec writes it, an
    incompressible payload) to the changelog topic, up to `total_bytes` of keys and values.
    Returns (records, bytes)."""
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    pad_raw = max(1, (value_bytes - 40) * 3 // 4)
    records = written = 0
    started = time.perf_counter()
    while written < total_bytes:
        key = f"fo-{records}/check".encode()
        pad = base64.b64encode(os.urandom(pad_raw)).decode()
        value = orjson.dumps({"n": records, "last": str(records), "pad": pad})
        _produce(producer, topic, value, key, partition=records % partitions)
        records += 1
        written += len(key) + len(value)
        if records % 5000 == 0:
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("the changelog was not acknowledged within 300 s")
    log(f"changelog: {records:,} records, {written / 1e6:,.0f} MB in {time.perf_counter() - started:.1f} s")
    return records, written


def raw_read(settings: Settings, topic: str, partitions: int) -> tuple[int, int, float]:
    """A plain consumer reading every partition to its end: (records, bytes, seconds from the first
    record to the last). Under the worker's garbage-collector settings (app.runtime.gctune): with
    CPython's defaults the raw limit would be ~20% lower than it is, flattering the restore."""
    undo_gc = tune_for_streams()
    consumer = make_consumer(settings, f"fo-raw-{uuid.uuid4().hex[:6]}", **{
        "isolation.level": "read_committed", "enable.partition.eof": True, **RESTORE_FETCH_CONFIG})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records = size = 0
    first = last = 0.0
    at_end: set[int] = set()
    try:
        while len(at_end) < partitions:
            # as the restorer takes them (a plain consume(n, timeout) waits out its timeout for
            # the last, partial batch)
            msgs = take_available(consumer, 10_000, 1.0)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                records += 1
                size += len(msg.key()) + len(msg.value())
            if msgs:
                last = time.perf_counter()
                if not first:
                    first = last
    finally:
        consumer.close()
        undo_gc()
    return records, size, last - first


def restore_rate(settings: Settings, opts: Options, home: Path, *, total_mb: float, value_bytes: int) -> dict[str, Any]:
    """(c) Cold restore of a changelog of `total_mb` through a fresh worker, against a raw read."""
    prefix = f"fr{uuid.uuid4().hex[:6]}-"
    s = settings.model_copy(update={"topic_prefix": prefix})
    create_topic(s, s.topic(SOURCE), opts.partitions)
    create_topic(s, s.topic(OUT), opts.partitions)
    app_id = "failover-restore"
    changelog = create_topic(s, s.topic(f"{app_id}-{TABLE}-changelog"), opts.partitions,
                             **{"cleanup.policy": "compact"})
    records, size = build_changelog(s, changelog, opts.partitions, total_bytes=int(total_mb * 1e6),
                                    value_bytes=value_bytes)
    raw_records, raw_bytes, raw_s = raw_read(s, changelog, opts.partitions)
    if raw_records != records:
        raise RuntimeError(f"the raw read got {raw_records} records of {records}")
    out: dict[str, Any] = {"restore_records": records, "restore_mb": round(size / 1e6, 1),
                           "raw_mb_s": round(raw_bytes / 1e6 / raw_s, 1), "raw_records_s": round(raw_records / raw_s)}
    log(f"raw read: {out['raw_mb_s']} MB/s, {out['raw_records_s']:,} records/s")
    worker = WorkerProcess(s, app_id, "cold", home / "restore" / "cold", home / "restore-cold.log", opts.guarantee,
                           opts.session_timeout_ms, 0)
    worker.start()
    try:
        samples: list[tuple[float, float]] = []  # (time, records restored so far)
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                n = worker.metric("vigil_restored_records_total")
                samples.append((time.perf_counter(), n))
                if n >= records:
                    break
            # a scrape takes the worker's CPU too: 4 a second, not 10 (py-spy: 10 took ~5% of it)
            time.sleep(METRICS_POLL_S)
        else:
            raise TimeoutError("the restore did not finish within an hour")
        wait_for(worker.ready, 120, "the restored worker ready")
    finally:
        worker.stop()
    # Wall time: from the last sample before the first record to the first with all of them (up to
    # 2 x METRICS_POLL_S too long). The rate: between the first and the last sample taken while
    # records were arriving, as the raw read's (from its first record to its last), so the polling
    # interval does not count against a restore of a few seconds; the wall span when there are
    # fewer than two such samples.
    start_t, start_n = max((s_ for s_ in samples if s_[1] == 0), default=samples[0])
    end_t, end_n = samples[-1]
    seconds = end_t - start_t
    inside = [s_ for s_ in samples if 0 < s_[1] < records]
    if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
        (start_t, start_n), (end_t, end_n) = inside[0], inside[-1]
    rate_s = end_t - start_t
    out.update({"restore_s": round(seconds, 1), "restore_records_s": round((end_n - start_n) / rate_s),
                "restore_mb_s": round(size * (end_n - start_n) / records / 1e6 / rate_s, 1)})
    out["restore_ratio"] = round(out["restore_records_s"] / out["raw_records_s"], 3)
    log(f"restore: {out['restore_mb_s']} MB/s, {out['restore_records_s']:,} records/s in {seconds:.1f} s "
        f"({out['restore_ratio']} x raw, goal >= {GOAL_RESTORE_RATIO})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=5000, help="events/s of the steady load")
    parser.add_argument("--guarantee", choices=["exactly_once", "at_least_once"], default="exactly_once")
    parser.add_argument("--session-timeout-ms", type=int, default=45_000)
    parser.add_argument("--standby-replicas", type=int, default=2,
                        help="of the standby scenario (default 2: with 3 workers, every survivor is warm)")
    parser.add_argument("--backlog", type=int, default=200_000, help="events of the max-throughput measurement")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of steady load before measuring")
    parser.add_argument("--cpu-window", type=float, default=20.0, help="seconds the workers' CPU is measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load after each disturbance")
    parser.add_argument("--restore-mb", type=float, default=1024.0, help="size of the changelog to restore")
    parser.add_argument("--restore-value-bytes", type=int, default=1000)
    parser.add_argument("--skip", default="", help="comma-separated: failover, standby, restore")
    parser.add_argument("--quick", action="store_true",
                        help="a scaled-down run: 10 s session timeout, 50k backlog, 100 MB restore, short windows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.session_timeout_ms, args.backlog, args.restore_mb = 10_000, 50_000, 100.0
        args.warmup, args.cpu_window, args.settle = 3.0, 5.0, 2.0
    skip = {s for s in args.skip.split(",") if s}
    opts = Options(workers=args.workers, partitions=args.partitions, identities=args.identities, rate_eps=args.rate,
                   guarantee=args.guarantee, session_timeout_ms=args.session_timeout_ms,
                   standby_replicas=args.standby_replicas, backlog=args.backlog, warmup_s=args.warmup,
                   cpu_window_s=args.cpu_window, settle_s=args.settle)
    result: dict[str, Any] = {"workers": opts.workers, "partitions": opts.partitions, "identities": opts.identities,
                              "rate_eps": opts.rate_eps, "guarantee": opts.guarantee,
                              "session_timeout_s": opts.session_timeout_ms / 1000,
                              "standby_replicas": opts.standby_replicas}
    with bench_stack() as settings, tempfile.TemporaryDirectory(prefix="vigil-bench-failover-") as tmp:
        home = Path(tmp)
        if "failover" not in skip:
            result.update(run_without_standby(settings, opts, home))
        if "standby" not in skip:
            result.update(run_with_standby(settings, opts, home))
        if "restore" not in skip:
            result.update(restore_rate(settings, opts, home, total_mb=args.restore_mb,
                                       value_bytes=args.restore_value_bytes))
        if os.environ.get("VIGIL_FAILOVER_KEEP_LOGS"):
            keep = Path(os.environ["VIGIL_FAILOVER_KEEP_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            for logfile in home.glob("*.log"):
                (keep / logfile.name).write_bytes(logfile.read_bytes())
    if "steady_eps_with_standby" in result and "steady_eps_without_standby" in result:
        result["standby_throughput_ratio"] = round(result["steady_eps_with_standby"]
                                                   / result["steady_eps_without_standby"], 3)
    result["goals"] = {"failover_after_expiry_s": GOAL_AFTER_EXPIRY_S, "lost": 0, "duplicates": 0,
                       "rolling_restart_replayed": 0, "restore_ratio": GOAL_RESTORE_RATIO}
    result["repo"] = str(REPO)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
