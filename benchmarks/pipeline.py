"""Pipeline benchmark: the worker's built-in pipeline (archive index, status and alerts, metric
windows, absence timers) over N Avro events, against the raw consumer on the same topic in the same
run, plus event-to-alert latency at a steady rate.

    python benchmarks/pipeline.py [--events 1000000] [--identities 10000] [--guarantee at_least_once]
                                  [--latency-rate 5000] [--latency-seconds 20] [--json]
                                  [--routes-repeat 4] [--no-routes] [--with-sinks SETTINGS.yaml] [--forwarder]

Throughput: the dataset of the runtime benchmark (benchmarks/common.py: 1 ms of event time apart,
one metric, a ttl on a tenth of the identities, some non-OK severities, so there are transitions,
alerts and flapping). `raw_eps` is common.raw_consume (confluent-kafka consume + fastavro decode +
dict update); `raw_vigil_decode_eps` the same loop decoding with Vigil's serde, as the worker does
(its compiled Avro reader when built), with `ratio_vigil_decode` against it; `pipeline_eps` is a
Worker running the built-in pipeline agent with RocksDB tables and changelogs, from the first
record processed to the commit after the N-th (start-up excluded). The copied events end at the
same point of a minute in every invocation (STEADY_END_PHASE_MS), so every run closes the same
windows: ~23,300 for 1M events, as many as 20 s of a live stream at 50,000 events/s does.

Issue 24's figure, in the same run: `pipeline_routes_eps` is the same measurement with the routes
stage beside the pipeline (ROUTES: 10 routes over globs, tags and severity, two of them 10% samples;
their destination topics created here), and `routes_ratio` = pipeline_routes_eps / pipeline_eps
(goal >= ROUTES_TARGET_RATIO). `--with-sinks FILE` adds the metric sinks stage to that run, built
from the settings with FILE's keys (a vigil.yaml fragment that enables them, e.g.
benchmarks/sinks-all.yaml against `benchmarks/sinks.py --serve`); that run then ends only when the
sinks have read every window the events closed and sent it (or dropped it: counted and reported
per sink and reason in `sinks`); once every window is read, the senders' last partial batches are
sent at once (`PushSink.send_held`) rather than at their `batch_delay` deadline. `--forwarder` runs
the routes and sinks in a forwarder instead (benchmarks/stages.py: a worker process of their own
consumer group, started with the pipeline's worker, as `vigil worker --stage routes --stage sinks
--batch-scheduling` and the chart's forwarders run them); that run ends only once the forwarder has
committed its copies of every event and sent every window, and its CPU (the forwarder's and its
sender process's) is in `thread_cpu_s["children"]`. `--routes-repeat N` (default 4)
makes N pairs of runs, one with routes and one without (the first without is the run above), in
the order ABBA BAAB... (pair_orders: a process's runs get slower one after another, so always
running with routes second would put that drift on them): `routes_ratio` is the median of the
pairs' ratios (`routes_pair_ratios`), `pipeline_eps` and `pipeline_routes_eps` the medians of each
series (`routes_ratio_of_medians` their ratio), every run's figure is listed, and
`routes_cpu_ratio` compares events per CPU second of this process, which other load on the
machine disturbs less.
`--no-routes` skips all this. The sinks' sender process (`sinks.senders: process`, the default)
is another process: its CPU is in `thread_cpu_s["children"]`, and `routes_cpu_ratio_with_children`
counts it with the run's. Every run also lists `thread_cpu_s`: the CPU seconds of the worker's
thread, of librdkafka's threads and of the others (the sinks' senders, the benchmark's registry),
and `other_processes`: the private Kafka broker's (when the benchmark started one), and
`worker_sched`: how the kernel scheduled the worker's thread (seconds runnable but waiting for a
CPU, moves between CPUs, preemptions, waits), to tell a run whose thread needed more CPU for the
same events from one whose thread lost its caches; with sinks `settle_s`: from the commit after the
N-th event until the sinks settled.

Latency: a fresh set of topics and `vigil worker` (built-in stages, as deployed) in a subprocess;
events produced at a steady rate with their production time as event time, a fifth of them
changing the state of their identity (each of those causes an Alert), by a producer configured as
Vigil's bridges configure theirs. Latency = when the alert is consumed - when its cause event was
handed to the producer (same clock: one machine), so the producer's linger counts.

Kafka: the stack from VIGIL_KAFKA_BOOTSTRAP/VIGIL_SCHEMA_REGISTRY_URL, else a throwaway one
(common.bench_stack). The last stdout line with --json is the result object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from common import REPO, bench_stack, emit_json, log, process_cpu_s, produce_dataset, raw_consume, read_proc_stat
from stages import (
    ForwarderWorker,
    SinksProgress,
    commit_ends,
    routed_copies,
    routes_stage,
    sink_counts,
    sink_stages,
    write_routes,
)

from app.bus.clients import PRODUCER_DEFAULTS, make_admin, make_consumer, make_producer
from app.config import Settings
from app.devstack.kafka import free_port
from app.model.ids import new_id
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.runtime.gctune import STREAM_THRESHOLDS
from app.runtime.stage import Stage
from app.runtime.worker import Guarantee, Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file

__all__ = ["ROUTES", "alert_latency_ms", "pipeline_eps"]

TARGET_RATIO = 0.35
TARGET_P99_MS = 100.0
ROUTES_TARGET_RATIO = 0.9
#: The routes of the "with routes" run, over the dataset of common.py (subjects host-0..999, names
#: load-0..9, tags.class client|server, severity 0 for 97%): about a third of the events are copied.
ROUTES = """\
routes:
  - {name: hosts-1x, match: {subject: "host-1*", name: load-0}, to: bench-hosts-1x}
  - {name: warnings, match: {severity: {ge: 1}}, to: bench-warnings}
  - {name: critical-servers, match: {severity: critical, tags.class: server}, to: bench-critical}
  - {name: clients-load0, match: {tags.class: client, name: "load-0"}, to: bench-clients}
  - {name: hosts-x5, match: {subject: "host-*5", name: load-9}, to: bench-hosts-x5}
  - {name: servers-9xx, match: {subject: "host-9*", not: {tags.class: client}}, to: bench-servers-9}
  - {name: two-hosts, match: {any: [{subject: host-42}, {subject: host-420}]}, to: bench-two-hosts}
  - {name: status-only, match: {kind: status}, to: bench-status}
  - {name: servers-tenth, match: {tags.class: server}, to: bench-dev-servers, sample: {percent: 10}}
  - {name: all-tenth, to: bench-dev-all, sample: {percent: 10, by: event_id}}
"""


def _isolated(settings: Settings, state_dir: Path) -> Settings:
    """Settings with a fresh topic prefix (every topics.yaml topic created) and state dir."""
    prefix = f"pb{uuid.uuid4().hex[:6]}-"
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": state_dir})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    return s


def retimed_copy(settings: Settings, source: str, target: str, events: int, *, event_rate: float) -> None:
    """Copy the dataset to the pipeline's `events` topic (same partition and order per record) with
    event times `1/event_rate` s apart, ending at `steady_end_ms` (within the last minute): the stream
    as it would arrive live at that rate.

    The dataset of common.py is 1 ms apart (a live stream of 1,000 events/s: each of 10,000
    identities reports every 10 s, so nearly every event closes a 10 s window when replayed fast).
    """
    from confluent_kafka import TopicPartition

    serde = AvroSerde(RegistryClient.from_settings(settings))
    writer = serde.writer(builtin_schema("vigil.Event"))
    consumer = make_consumer(settings, f"copy-{uuid.uuid4().hex[:6]}")
    md = consumer.list_topics(source, timeout=10)
    consumer.assign([TopicPartition(source, p, 0) for p in md.topics[source].partitions])
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    end_ms = steady_end_ms(int(time.time() * 1000))
    first_ms = _first_time(consumer, serde, len(md.topics[source].partitions))
    step_ms = 1000.0 / event_rate
    copied = 0
    while copied < events:
        for msg in consumer.consume(20_000, timeout=1.0):
            if msg.error():
                continue
            record = serde.decode(msg.value())
            # the dataset is 1 ms apart in production order: (time - first) is the event's index
            record["time"] = end_ms - int((events - (record["time"] - first_ms)) * step_ms)
            while True:
                try:
                    producer.produce(target, writer.encode(record), msg.key(), partition=msg.partition())
                    break
                except BufferError:
                    producer.poll(0.05)
            copied += 1
        producer.poll(0)
    producer.flush(120)
    consumer.close()


#: Where the retimed events end within a minute (ms past a whole minute of event time), so every run
#: closes the same windows: with the default pipeline (10 s and 1 min windows, 5 s grace, closing
#: timers spread over 5 s) and 20 s of events (1M at 50,000/s), the 1 min boundary and one 10 s
#: boundary fall 16.7 s before the end (every identity's windows there close) and the next 10 s
#: boundary 6.7 s before it (a third of the identities' closing timers are due by the end): 10,000 x
#: (2 + 1/3) windows, what 20 s of a live stream at this rate closes in steady state (each identity
#: closes one 10 s window every 10 s and one 1 min window every minute). Ending "now" instead made
#: the count depend on when a run started: 10,000 to 24,077 windows per run were seen.
STEADY_END_PHASE_MS: Final = 16_667


def steady_end_ms(now_ms: int) -> int:
    """The latest instant at or before `now_ms` that is STEADY_END_PHASE_MS past a whole minute."""
    return now_ms - (now_ms - STEADY_END_PHASE_MS) % 60_000


def _first_time(consumer: Any, serde: AvroSerde, partitions: int) -> int:
    """The earliest event time of the dataset: the smallest of each partition's first record (times
    grow within a partition). Rewinds the consumer's assignment afterwards."""
    from confluent_kafka import TopicPartition

    assignment = consumer.assignment()
    firsts: dict[int, int] = {}
    while len(firsts) < partitions:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() is None and msg.partition() not in firsts:
                firsts[msg.partition()] = serde.decode(msg.value())["time"]
    consumer.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in assignment])
    return min(firsts.values())


def _rss_mb() -> int:
    """This process's resident memory now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def _thresholds(text: str) -> tuple[int, int, int]:
    g0, g1, g2 = (int(x) for x in text.split(","))
    return g0, g1, g2


def pipeline_eps(s: Settings, events: int, guarantee: Guarantee,
                 gc_threshold: tuple[int, int, int] | None = None, stages: Sequence[Stage] = (),
                 settled: Callable[[Worker], bool] | None = None, start_at_end: Sequence[str] = (),
                 child_pids: Callable[[], Sequence[int]] = tuple,
                 on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Events/s of the built-in pipeline agent in a Worker (tables in RocksDB with changelogs), on
    the `events` topic of settings `s`, with the agents of `stages` beside it (closed afterwards).
    `settled`: the run ends only once it also holds (e.g. the sinks delivered every window the
    events closed), so work that lags behind the pipeline is not left out of the time.
    `start_at_end`: logical topics the run's agents read from their current end (the windows an
    earlier run published on `metrics` are not this run's work).
    `child_pids`: processes of the stages (the sinks' sender process, the forwarder) whose CPU the
    run also counts (`thread_cpu_s["children"]`, `cpu_eps_with_children`).
    `on_start`: called as the worker starts (the forwarder starts with it).
    `gc_threshold`: an experiment, the worker's collector thresholds for the run instead of
    app.runtime.gctune.STREAM_THRESHOLDS."""
    from app.pipeline.agents import Pipeline
    from app.pipeline.config import PipelineConfig

    pipeline = Pipeline(PipelineConfig.from_settings(s))
    app_id = f"bench-pl-{uuid.uuid4().hex[:6]}"
    for topic in start_at_end:
        commit_ends(s, app_id, s.topic(topic))
    worker = Worker(s, [pipeline.agent, *(a for stage in stages for a in stage.agents)],
                    WorkerOptions(app_id=app_id, guarantee=guarantee, instance_id="bench",
                                  gc_thresholds=gc_threshold or STREAM_THRESHOLDS),
                    collectors=[c for stage in stages for c in stage.collectors])
    stats = worker.engine.stats[pipeline.agent.name]
    thread = threading.Thread(target=worker.run, daemon=True)
    gc_seconds = _time_gc()
    if on_start is not None:
        on_start()
    thread.start()
    try:
        first = done = 0.0
        cpu_first = cpu_done = 0.0  # this process's CPU time: the worker's thread and its clients' threads
        threads_first: dict[str, float] = {}
        threads_done: dict[str, float] = {}
        sched_first: dict[str, float] = {}
        sched_done: dict[str, float] = {}
        commits_at_n = None
        committed_at = 0.0  # when the N-th event's work was committed (before the sinks settled)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            n = stats.events_in
            now = time.perf_counter()
            if n and not first:
                first, cpu_first = now, time.process_time()
                threads_first = _threads_cpu_s(thread.native_id)
                sched_first = _worker_sched(thread.native_id)
                threads_first["children"] = sum(process_cpu_s(pid) for pid in child_pids())
                threads_first["other_processes"] = _other_children_cpu_s(child_pids())
            if n >= events and commits_at_n is None:
                commits_at_n = worker.metrics.commits._value.get()
            committed = commits_at_n is not None and worker.metrics.commits._value.get() > commits_at_n
            if committed and not committed_at:
                committed_at = now
            if committed and (settled is None or settled(worker)):
                done, cpu_done = now, time.process_time()
                threads_done = _threads_cpu_s(thread.native_id)
                sched_done = _worker_sched(thread.native_id)
                threads_done["children"] = sum(process_cpu_s(pid) for pid in child_pids())
                threads_done["other_processes"] = _other_children_cpu_s(child_pids())
                break
            time.sleep(0.005)
        else:
            raise TimeoutError(f"only {stats.events_in} of {events} processed")
        # events per CPU second: what the worker costs, less dependent than eps on other work on the machine
        children_s = threads_done["children"] - threads_first["children"]
        by_generation = _gc_between(gc_seconds(), first, done)
        return {"eps": events / (done - first), "cpu_eps": round(events / (cpu_done - cpu_first)),
                "cpu_eps_with_children": round(events / (cpu_done - cpu_first + children_s)),
                "gc_s": round(sum(seconds for seconds, _ in by_generation.values()), 2),
                "gc_by_generation": by_generation, "timers_fired": stats.timers_fired,
                "thread_cpu_s": {k: round(v - threads_first.get(k, 0.0), 2) for k, v in threads_done.items()},
                "settle_s": round(done - committed_at, 2),
                "worker_sched": {k: round(v - sched_first.get(k, 0.0), 2) for k, v in sched_done.items()},
                # what earlier runs of this process left behind shows here (runs alternate in one process)
                "rss_mb": _rss_mb(), "threads": threading.active_count(),
                **pipeline.stats()}
    finally:
        gc_seconds.stop()
        worker.stop()
        thread.join(120)
        for stage in stages:
            stage.close()


def pair_orders(pairs: int) -> list[bool]:
    """For each pair of runs, whether the run with routes goes first: ABBA BAAB... (the first pair
    starts without them: that run is the throughput run before). A process's runs get slower one
    after another (measured: runs without routes at 51k, 45k, 43k events/s in one invocation), so
    always running with routes second put that drift on them; in this order half the pairs have it
    each way."""
    return [i % 4 in (1, 2) for i in range(pairs)]


def _routes_comparison(s: Settings, args: argparse.Namespace, rules_dir: Path, first: dict[str, Any]
                       ) -> dict[str, Any]:
    """The pipeline with the routes (and sinks) beside it and without them, `--routes-repeat` pairs of
    runs in the order of pair_orders (`first` is the first run without): the median of the pairs'
    ratios, the medians of both series and their ratio, in events/s and in events per CPU second
    (steadier on a shared machine), every run's figure."""
    import statistics

    text = args.routes_file.read_text() if args.routes_file is not None else ROUTES
    without, with_routes, copies, sunk = [first], [], [], []

    routes = write_routes(s, rules_dir, text)

    def run_beside(i: int) -> None:
        """The routes and sinks in the pipeline's worker."""
        extra = [routes_stage(s, rules_dir)]
        progress = None
        if args.with_sinks is not None:
            sinks, stage = sink_stages(s, args.with_sinks)
            extra.append(stage)
            progress = SinksProgress(sinks)
        with_routes.append(pipeline_eps(
            s, args.events, Guarantee(args.guarantee), args.gc_threshold, extra,
            progress.in_worker() if progress else None, start_at_end=["metrics"] if progress else (),
            child_pids=progress.sender_pids if progress else tuple))
        copies.append(routed_copies(extra))
        if progress is not None:
            sunk.append({**progress.counts, **sink_counts(progress.sinks)})

    def run_forwarder(i: int) -> None:
        """The routes and sinks in a forwarder process."""
        forwarder = ForwarderWorker(s, rules_dir, args.with_sinks, Guarantee(args.guarantee), args.events)
        try:
            with_routes.append(pipeline_eps(s, args.events, Guarantee(args.guarantee), args.gc_threshold,
                                            settled=forwarder.settled, child_pids=forwarder.pids,
                                            on_start=forwarder.go))
        finally:
            forwarder.close()
        copies.append(forwarder.details["copies"])
        if args.with_sinks is not None:
            sunk.append({**forwarder.details["windows"], **forwarder.details["sinks"]})

    def run_with(i: int) -> None:
        (run_forwarder if args.forwarder else run_beside)(i)
        if args.with_sinks is not None:
            log(f"sinks, pair {i + 1}: {sunk[-1]}")
        log(f"pipeline with routes, pair {i + 1}: {with_routes[-1]['eps']:,.0f} ev/s, {with_routes[-1]['cpu_eps']:,} "
            f"per CPU second; {copies[-1]:,} copies; CPU s by thread {with_routes[-1]['thread_cpu_s']}; "
            f"{with_routes[-1]['settle_s']} s from the last commit until the sinks settled; "
            f"the worker's thread scheduled {with_routes[-1]['worker_sched']}; "
            f"RSS {with_routes[-1]['rss_mb']} MB, {with_routes[-1]['threads']} threads")

    def run_without(i: int) -> None:
        without.append(pipeline_eps(s, args.events, Guarantee(args.guarantee), args.gc_threshold))
        log(f"pipeline without, pair {i + 1}: {without[-1]['eps']:,.0f} ev/s, {without[-1]['cpu_eps']:,} "
            f"per CPU second; CPU s by thread {without[-1]['thread_cpu_s']}; the worker's thread scheduled "
            f"{without[-1]['worker_sched']}; RSS {without[-1]['rss_mb']} MB, {without[-1]['threads']} threads")

    orders = pair_orders(args.routes_repeat)
    for i, with_first in enumerate(orders):
        if with_first:
            run_with(i)
            run_without(i)
        else:
            if i:
                run_without(i)
            run_with(i)
    out: dict[str, Any] = {
        "routes": routes, "routes_file": str(args.routes_file or "ROUTES"), "forwarder": args.forwarder,
        "routed_copies": copies[-1], "routes_repeat": args.routes_repeat,
        "pipeline_eps_runs": [round(r["eps"]) for r in without],
        "pipeline_routes_eps_runs": [round(r["eps"]) for r in with_routes],
        "pipeline_cpu_eps_runs": [r["cpu_eps"] for r in without],
        "pipeline_routes_cpu_eps_runs": [r["cpu_eps"] for r in with_routes],
        "pipeline_routes_cpu_eps_with_children_runs": [r["cpu_eps_with_children"] for r in with_routes],
        "pipeline_thread_cpu_s_runs": [r["thread_cpu_s"] for r in without],
        "pipeline_routes_thread_cpu_s_runs": [r["thread_cpu_s"] for r in with_routes],
        "pipeline_worker_sched_runs": [r.get("worker_sched") for r in without],
        "pipeline_routes_worker_sched_runs": [r["worker_sched"] for r in with_routes],
        "pipeline_gc_s_runs": [r.get("gc_s") for r in without],
        "pipeline_routes_gc_s_runs": [r["gc_s"] for r in with_routes],
        "pipeline_gc_by_generation_runs": [r.get("gc_by_generation") for r in without],
        "pipeline_routes_gc_by_generation_runs": [r["gc_by_generation"] for r in with_routes],
        "pipeline_eps": statistics.median(r["eps"] for r in without),
        "pipeline_routes_eps": statistics.median(r["eps"] for r in with_routes),
        "routes_first_in_pair": orders,
    }
    if args.with_sinks is not None:
        out["sinks"] = sunk

    def pairs_ratio(with_key: str, without_key: str) -> float:
        """The median of each pair's ratio (with / without)."""
        return round(statistics.median(w[with_key] / o[without_key] for w, o in zip(with_routes, without,
                                                                                     strict=True)), 3)

    out["routes_pair_ratios"] = [round(w["eps"] / o["eps"], 3) for w, o in zip(with_routes, without, strict=True)]
    out["routes_ratio"] = pairs_ratio("eps", "eps")
    out["routes_cpu_ratio"] = pairs_ratio("cpu_eps", "cpu_eps")
    # the same counting the sinks' sender process too (its CPU is off this process's clock)
    out["routes_cpu_ratio_with_children"] = pairs_ratio("cpu_eps_with_children", "cpu_eps")
    out["routes_ratio_of_medians"] = round(out["pipeline_routes_eps"] / out["pipeline_eps"], 3)
    log(f"pipeline with {out['routes']} routes{' and sinks' if out.get('sinks') else ''}: "
        f"{out['pipeline_routes_eps']:,.0f} ev/s against {out['pipeline_eps']:,.0f} without (medians of "
        f"{args.routes_repeat}); median of the pairs' ratios {out['routes_ratio']} x {out['routes_pair_ratios']} "
        f"(per CPU second {out['routes_cpu_ratio']} x, {out['routes_cpu_ratio_with_children']} x with the sender "
        f"process), target {ROUTES_TARGET_RATIO}; {out['routed_copies']:,} copies")
    return out


def _other_children_cpu_s(stage_pids: Sequence[int]) -> float:
    """CPU seconds so far of this process's child processes other than `stage_pids` (Linux /proc;
    0.0 elsewhere): the private Kafka broker when the benchmark started one (common.bench_stack),
    which shares the machine with the worker."""
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    stats = [read_proc_stat(f"/proc/{pid}/stat") for pid in pids if pid not in stage_pids]
    return sum(stat.cpu_s for stat in stats if stat is not None and stat.parent_pid == me)


def _threads_cpu_s(worker_tid: int | None) -> dict[str, float]:
    """CPU seconds so far of this process's threads by kind (Linux /proc; empty elsewhere): the
    worker's thread, librdkafka's threads (names `rdk:...`), and every other thread (sink senders,
    the benchmark's registry): where a run's CPU went."""
    out = {"worker": 0.0, "librdkafka": 0.0, "other": 0.0}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for tid in tids:
        stat = read_proc_stat(f"/proc/self/task/{tid}/stat")
        if stat is None:
            continue  # ended meanwhile
        kind = "worker" if int(tid) == worker_tid else "librdkafka" if stat.name.startswith("rdk:") else "other"
        out[kind] += stat.cpu_s
    return out


def _worker_sched(tid: int | None) -> dict[str, float]:
    """How the kernel scheduled the worker's thread so far (Linux /proc; empty elsewhere): seconds
    it waited runnable for a CPU, its moves between CPUs, and its switches away that it did not ask
    for (preempted) or asked for (waits): runs whose thread needed more CPU for the same events
    can be told apart from runs that lost their CPU's caches to moves or preemptions."""
    if tid is None:
        return {}
    base = f"/proc/self/task/{tid}"
    try:
        with open(f"{base}/schedstat") as f:
            wait_ns = int(f.read().split()[1])
        fields: dict[str, str] = {}
        with open(f"{base}/sched") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except (OSError, ValueError, IndexError):
        return {}
    return {"runnable_wait_s": wait_ns / 1e9, "migrations": float(fields.get("se.nr_migrations", 0)),
            "preempted": float(fields.get("nr_involuntary_switches", 0)),
            "waits": float(fields.get("nr_voluntary_switches", 0))}


def _time_gc() -> Any:
    """Start timing the garbage collector (all threads); returns a function giving the collections
    so far as (start, end, generation), perf_counter seconds. Stop it with `.stop()`."""
    import gc

    collections: list[tuple[float, float, int]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append((started[0], time.perf_counter(), info["generation"]))

    gc.callbacks.append(on_gc)

    def so_far() -> list[tuple[float, float, int]]:
        return list(collections)

    so_far.stop = lambda: gc.callbacks.remove(on_gc)  # type: ignore[attr-defined]
    return so_far


def _gc_between(collections: list[tuple[float, float, int]], first: float, done: float) -> dict[str, Any]:
    """Seconds and counts of the collections inside [first, done], by generation."""
    out: dict[str, Any] = {}
    for start, end, generation in collections:
        if start >= first and end <= done:
            seconds, count = out.get(f"gen{generation}", (0.0, 0))
            out[f"gen{generation}"] = (round(seconds + end - start, 3), count + 1)
    return out


# -- latency ------------------------------------------------------------------------------------------
def _spawn_worker(settings: Settings, state_dir: Path, http_port: int, guarantee: str,
                  only_pipeline: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_TOPIC_PREFIX": settings.topic_prefix,
           "VIGIL_STATE_DIR": str(state_dir), "VIGIL_CONFIG": str(state_dir / "none.yaml")}
    cmd = [sys.executable, "-m", "app", "--bootstrap", settings.kafka_bootstrap, "--registry",
           settings.schema_registry_url, "worker", "--app-id", f"lat-{uuid.uuid4().hex[:6]}", "--instance-id", "lat",
           "--guarantee", guarantee, "--http", f"127.0.0.1:{http_port}", "--log-level", "WARNING"]
    if only_pipeline:
        cmd += ["--stage", "pipeline"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)


def _wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    import json
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                body = json.loads(resp.read())
                if body.get("ok") and body.get("assigned"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the worker did not become healthy")


def alert_latency_ms(settings: Settings, *, rate_eps: int, seconds: float, identities: int, guarantee: str,
                     only_pipeline: bool = True, warmup_s: float = 3.0,
                     linger_ms: float | None = None) -> dict[str, Any]:
    """Event-to-alert latency percentiles at a steady produce rate, through `vigil worker` running
    the pipeline only, or every built-in stage (rules, members, ...) as deployed.

    The first `warmup_s` of the stream are not measured: they include one-off start-up costs (the
    worker's first fetch, metadata of the output topics it produces to for the first time, schema
    ids from the registry), not the steady state the figure describes. `linger_ms`: the event
    producer's linger.ms (default: make_producer's, as Vigil's bridges and beacons use)."""
    from app.pipeline.agents import EVENTS_TOPIC

    with tempfile.TemporaryDirectory(prefix="vigil-bench-latency-") as state:
        s = _isolated(settings, Path(state))
        port = free_port()
        proc = _spawn_worker(s, Path(state), port, guarantee, only_pipeline)
        try:
            _wait_healthy(port, proc)
            serde = AvroSerde(RegistryClient.from_settings(s))
            alert_reader = _alert_reader(s, guarantee)
            produced_at: dict[str, float] = {}
            received: list[tuple[str, float]] = []
            stop = threading.Event()
            reader = threading.Thread(target=alert_reader, args=(serde, received, stop), daemon=True)
            reader.start()
            time.sleep(2)  # the reader is assigned before the first event
            writer = serde.writer(builtin_schema("vigil.Event"))
            # Produced as Vigil's bridges and beacons produce (make_producer's defaults: linger 5 ms,
            # included in the latency). With linger 0 every event is a produce request of its own:
            # measured on this 2-core machine, that alone costs the broker over a core at 5,000/s
            # (116% against 44%), which starves the worker it shares the machine with.
            producer = make_producer(s, **({} if linger_ms is None else {"linger.ms": linger_ms}))
            topic = s.topic(EVENTS_TOPIC)
            total = int(rate_eps * (warmup_s + seconds))
            measured_from = int(rate_eps * warmup_s)
            seen: dict[int, int] = {}
            started = time.perf_counter()
            for i in range(total):
                ahead = i / rate_eps - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
                ident = i % identities
                count = seen[ident] = seen.get(ident, 0) + 1
                # a fifth of the identities alternate OK/CRITICAL: each of their events is a transition
                severity = 2 if ident % 5 == 0 and count % 2 == 0 else 0
                now_ms = int(time.time() * 1000)
                event_id = new_id(now_ms)
                record = {"id": event_id, "time": now_ms, "subject": f"lat-{ident}", "name": "check", "kind": "STATUS",
                          "severity": severity, "origin": "bench", "text": "", "tags": {}, "metrics": {"v": 1.0},
                          "ttl": None, "extended": None, "trace_id": None}
                if ident % 5 == 0 and count > 1 and i >= measured_from:
                    produced_at[event_id] = time.time()
                producer.produce(topic, writer.encode(record), f"lat-{ident}/check".encode())
                producer.poll(0)
            producer.flush(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len({a for a, _ in received if a in produced_at}) < len(produced_at):
                time.sleep(0.1)
            stop.set()
            reader.join(10)
        finally:
            proc.terminate()
            proc.wait(60)
    latencies = sorted((at - produced_at[cause]) * 1000 for cause, at in received if cause in produced_at)
    if not latencies:
        raise RuntimeError("no alerts received")

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"alerts": len(latencies), "expected_alerts": len(produced_at), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": latencies[-1]}


def _alert_reader(settings: Settings, guarantee: str) -> Any:
    from confluent_kafka import TopicPartition

    def read(serde: AvroSerde, received: list[tuple[str, float]], stop: threading.Event) -> None:
        iso = "read_committed" if guarantee == Guarantee.EXACTLY_ONCE.value else "read_uncommitted"
        consumer = make_consumer(settings, f"lat-read-{uuid.uuid4().hex[:6]}", **{"isolation.level": iso,
                                                                               "fetch.wait.max.ms": 5})
        topic = settings.topic("alerts")
        md = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            at = time.time()
            received.append((serde.decode(msg.value())["cause_event_id"], at))
        consumer.close()

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--event-rate", type=float, default=50_000,
                        help="event time spacing of the dataset, as events/s of a live stream (1000: as produced)")
    parser.add_argument("--guarantee", choices=[g.value for g in Guarantee], default=Guarantee.AT_LEAST_ONCE.value)
    parser.add_argument("--latency-rate", type=int, default=5000, help="events/s for the latency run (0: skip)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-warmup", type=float, default=3.0, help="seconds of the stream not measured")
    parser.add_argument("--latency-worker", choices=["pipeline", "builtins"], default="pipeline",
                        help="the worker of the latency run: the pipeline agent only, or every built-in stage")
    parser.add_argument("--latency-linger-ms", type=float, default=None,
                        help="linger.ms of the latency run's event producer (default: Vigil's producer default)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--gc-threshold", type=_thresholds, metavar="G0,G1,G2",
                        help="experiment: the worker's collector thresholds (default: gctune.STREAM_THRESHOLDS)")
    parser.add_argument("--no-routes", action="store_true", help="skip the run with 10 routes (pipeline_routes_eps)")
    parser.add_argument("--with-sinks", type=Path, metavar="SETTINGS.yaml", default=None,
                        help="the routes run also runs the metric sink stages, enabled by this vigil.yaml fragment")
    parser.add_argument("--routes-file", type=Path, default=None, metavar="ROUTES.yaml",
                        help="the routes of the routes run (default: ROUTES, 10 routes over this dataset)")
    parser.add_argument("--forwarder", action="store_true",
                        help="run the routes and sinks in a forwarder: a worker process of their own (`vigil worker "
                             "--stage routes --stage sinks --app-id vigil-forwarder`, the chart's `forwarder`)")
    parser.add_argument("--routes-repeat", type=int, default=4, metavar="N",
                        help="pairs of runs with and without routes, in the order ABBA BAAB...")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"events": args.events, "identities": args.identities, "guarantee": args.guarantee,
                              "event_rate": args.event_rate}
    with bench_stack() as settings, tempfile.TemporaryDirectory(prefix="vigil-bench-pipeline-") as state:
        if not args.skip_throughput:
            dataset = produce_dataset(settings, events=args.events, identities=args.identities,
                                      partitions=args.partitions)
            s = _isolated(settings, Path(state))
            retimed_copy(settings, dataset, s.topic("events"), args.events, event_rate=args.event_rate)
            result["raw_eps"] = raw_consume(s, s.topic("events"), args.events)
            log(f"raw: {result['raw_eps']:,.0f} ev/s")
            # The worker decodes with Vigil's serde (its compiled reader when built), raw with fastavro:
            # the same raw loop with the worker's decoder shows what that difference is worth.
            vigil_decode = AvroSerde(RegistryClient.from_settings(s)).decode
            result["raw_vigil_decode_eps"] = raw_consume(s, s.topic("events"), args.events, vigil_decode)
            log(f"raw with Vigil's decoder: {result['raw_vigil_decode_eps']:,.0f} ev/s")
            run = pipeline_eps(s, args.events, Guarantee(args.guarantee), args.gc_threshold)
            result["pipeline_eps"] = run.pop("eps")
            result.update(run)
            result["ratio"] = round(result["pipeline_eps"] / result["raw_eps"], 3)
            result["ratio_vigil_decode"] = round(result["pipeline_eps"] / result["raw_vigil_decode_eps"], 3)
            log(f"pipeline: {result['pipeline_eps']:,.0f} ev/s ({result['ratio']} x raw, target {TARGET_RATIO}); "
                f"{result['cpu_eps']:,} events per CPU second; CPU s by thread {result['thread_cpu_s']}")
            if not args.no_routes:
                first = {"eps": result["pipeline_eps"], "cpu_eps": result["cpu_eps"],
                         "thread_cpu_s": result["thread_cpu_s"], "gc_s": result["gc_s"],
                         "gc_by_generation": result["gc_by_generation"]}
                result.update(_routes_comparison(s, args, Path(state) / "rules", first))
        if args.latency_rate > 0:
            lat = alert_latency_ms(settings, rate_eps=args.latency_rate, seconds=args.latency_seconds,
                                   identities=min(args.identities, 1000), guarantee=args.guarantee,
                                   only_pipeline=args.latency_worker == "pipeline", warmup_s=args.latency_warmup,
                                   linger_ms=args.latency_linger_ms)
            result.update({f"latency_{k}": v for k, v in lat.items()})
            result["latency_rate_eps"] = args.latency_rate
            result["latency_worker"] = args.latency_worker
            result["latency_linger_ms"] = (PRODUCER_DEFAULTS["linger.ms"] if args.latency_linger_ms is None
                                           else args.latency_linger_ms)
            log(f"event-to-alert latency at {args.latency_rate} ev/s: p50 {lat['p50_ms']:.1f} ms, "
                f"p99 {lat['p99_ms']:.1f} ms (target p99 < {TARGET_P99_MS:.0f} ms)")
    result["repo"] = str(REPO)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
