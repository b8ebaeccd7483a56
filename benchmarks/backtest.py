"""Backtest benchmark: N stored events through `vigil backtest` (the built-in pipeline and 20 rules of
every trigger kind, in event time), against the raw limit on the same range in the same run.

    python benchmarks/backtest.py [--events 1000000] [--identities 10000] [--processes N] [--json]

Dataset: N vigil.Event records on a fresh `events` topic (6 partitions, keyed by identity),
`--event-rate` events per second of event time apart (default 1,000: a fleet of 10,000 identities
each reporting every 10 s, so most events close a metric window), over `identities` identities: 1,000 hosts times
ten names (load, heartbeat, disk, mem, log, svc, net, temp, deploy, restart) with metrics, ttls on
heartbeats and services (a twentieth of the hosts fall silent halfway: ttl expiries and
`absent_for` firings), severities that change (status transitions and alerts), error logs.

Measured, each from the start of the call to its result (start-up, offset lookup and process
start included):
- raw_eps: the raw limit, one process: confluent-kafka consume + Vigil's decoder (the one the
  backtest and the worker use) + a dict update per record (`raw_fastavro_eps`: fastavro's decoder);
- backtest_eps: `run_backtest` with one rule set (20 rules), `--processes` processes (default: one
  per core); backtest_1p_eps the same in one process (how it scales);
- backtest_compare_eps: two rule sets of 20 (the second with other thresholds, windows and
  throttles) in one pass.
The ratios are against raw_eps; `day_86m_s` is how long a day of a 1,000 events/s fleet (86.4M
events) would take at backtest_eps. `*_cpu_us` are the CPU microseconds per event of each run (all
its processes): on a machine shared with other work they show the cost where wall-clock rates
show the share of the cores a run got. The last stdout line with --json is the result object.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import REPO, bench_stack, emit_json, log, raw_consume

from app.backtest.run import BacktestRequest, BacktestResult, run_backtest
from app.backtest.times import TimeRange
from app.bus.clients import make_admin, make_producer
from app.config import Settings
from app.model.events import Event
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file

__all__ = ["RULES_A", "RULES_B", "produce_fleet"]

TARGET_RATIO = 0.5
TARGET_COMPARE_SLOWDOWN = 1.3
NAMES = ("load", "heartbeat", "disk", "mem", "log", "svc", "net", "temp", "deploy", "restart")

#: 20 rules, every trigger kind (match, register with and without `for`, status, absent_for, count,
#: sequence), groups by identity, subject, a tag and none, throttles.
RULES_A = """
rules:
  - name: load-high
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 30s}
    when: {gt: 30}
    throttle: {once_within: 5m}
    actions: [{print: {text: "load {{ value }} on {{ event.subject }}"}}]
  - name: load-high-for
    match: {name: load}
    register: {metric: load1, aggregate: avg, period: 10s}
    when: {gt: 25}
    for: 20s
    throttle: {once_within: 10m}
    actions: [{print: {}}]
  - name: load-p95
    match: {name: load}
    register: {metric: load1, aggregate: p95, period: 1m}
    when: {gt: 39}
    throttle: {once_within: 10m}
    actions: [{print: {}}]
  - name: class-load
    match: {name: load}
    group_by: [tags.class]
    register: {metric: load1, aggregate: avg, period: 10s}
    when: {gt: 21}
    throttle: {once_within: 1m}
    actions: [{print: {text: "class {{ group }}", target: "{{ event.tags.class }}"}}]
  - name: disk-critical
    match: {name: disk}
    status: {to: CRITICAL}
    actions:
      - print: {text: "{{ event.subject }} disk critical"}
      - fire_event: {subject: "{{ event.subject }}", name: page}
  - name: disk-recovered
    match: {name: disk}
    status: {from: CRITICAL, to: OK}
    actions: [{print: {}}]
  - name: disk-any-transition
    match: {name: disk}
    status: {}
    throttle: {once_within: 30m}
    actions: [{print: {}}]
  - name: mem-warning
    match: {name: mem}
    group_by: [subject]
    status: {to: WARNING}
    throttle: {once_within: 10m}
    actions: [{print: {}}]
  - name: expired
    status: {to: EXPIRED}
    actions: [{print: {text: "{{ event.subject }}/{{ event.name }} went silent"}}]
  - name: heartbeat-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 45s
    actions: [{print: {text: "{{ event.subject }} silent for {{ value }}s"}}]
  - name: svc-absent
    match: {name: svc}
    group_by: [subject]
    absent_for: 2m
    actions: [{print: {}}]
  - name: log-errors
    match: {name: log, tags.level: error}
    count: {at_least: 3, within: 1m}
    actions: [{print: {}}]
  - name: log-storm
    match: {name: log, tags.level: error}
    group_by: []
    count: {at_least: 50, within: 10s}
    throttle: {once_within: 5m}
    actions: [{print: {target: fleet}}]
  - name: criticals-everywhere
    match: {severity: {ge: 2}}
    group_by: []
    count: {at_least: 40, within: 1m}
    throttle: {once_within: 10m}
    actions: [{print: {target: fleet}}]
  - name: deploy-then-restart
    match: {name: {in: [deploy, restart]}}
    group_by: [subject]
    sequence: [{match: {name: deploy}}, {match: {name: restart}}]
    within: 30s
    actions: [{print: {}}]
  - name: restart-loop
    match: {name: restart}
    count: {at_least: 3, within: 1m}
    actions: [{print: {}}]
  - name: svc-down
    match: {name: svc, severity: {ge: 2}}
    actions: [{print: {text: "{{ event.subject }} service down"}}]
  - name: net-errors
    match: {name: net}
    register: {metric: errors, aggregate: sum, period: 1m}
    when: {gt: 60}
    throttle: {once_within: 15m}
    actions: [{print: {}}]
  - name: temp-high
    match: {name: temp, metrics.celsius: {gt: 89.5}}
    group_by: [subject]
    throttle: {once_within: 1h}
    actions: [{print: {}}]
  - name: mem-high
    match: {name: mem}
    register: {metric: used_pct, aggregate: max, period: 30s}
    when: {gt: 97}
    for: 30s
    actions: [{print: {}}]
"""

#: The same rules tuned: other thresholds, windows, `for:`s and throttles (what --compare is for).
RULES_B = (RULES_A.replace("when: {gt: 30}", "when: {gt: 28}").replace("once_within: 5m}", "once_within: 2m}")
           .replace("for: 20s", "for: 10s").replace("absent_for: 45s", "absent_for: 60s")
           .replace("at_least: 3, within: 1m}", "at_least: 4, within: 1m}").replace("gt: 89.5", "gt: 88")
           .replace("when: {gt: 97}", "when: {gt: 96}"))


def _isolated(settings: Settings) -> Settings:
    prefix = f"bt{uuid.uuid4().hex[:6]}-"
    s = settings.model_copy(update={"topic_prefix": prefix})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    return s


def _event(rng: random.Random, ident: int, time_ms: int, silent: bool) -> Event | None:
    host, name = f"host-{ident % 1000}", NAMES[ident // 1000 % len(NAMES)]
    tags = {"class": "client" if ident % 2 else "server", "rack": f"r{ident % 40}"}
    metrics: dict[str, float] = {}
    severity, ttl = 0, None
    if name == "load":
        metrics = {"load1": rng.random() * 40, "load5": rng.random() * 30}
    elif name == "heartbeat":
        if silent:
            return None
        ttl = 30.0
    elif name == "disk":
        metrics = {"used_pct": 50 + rng.random() * 40}
        severity = 2 if rng.random() < 0.03 else 0
    elif name == "mem":
        metrics = {"used_pct": 60 + rng.random() * 38}
        severity = 1 if rng.random() < 0.02 else 0
    elif name == "log":
        tags["level"] = "error" if rng.random() < 0.2 else "info"
    elif name == "svc":
        if silent:
            return None
        ttl = 60.0
        severity = 2 if rng.random() < 0.01 else 0
    elif name == "net":
        metrics = {"errors": float(rng.randrange(4)), "rx_bytes": rng.random() * 1e9}
    elif name == "temp":
        metrics = {"celsius": 40 + rng.random() * 50}
    return Event(subject=host, name=name, time=time_ms, kind="METRIC" if metrics else "STATUS", severity=severity,
                 origin="bench", metrics=metrics, tags=tags, ttl=ttl)


def produce_fleet(settings: Settings, topic: str, *, events: int, identities: int, event_rate: float = 1000.0,
                  seed: int = 7) -> tuple[int, int]:
    """Produce the dataset (module docstring) to `topic`, `event_rate` events per second of event
    time; returns (first, last) event time."""
    serde = AvroSerde(RegistryClient.from_settings(settings))
    writer = serde.writer(builtin_schema("vigil.Event"))
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    rng = random.Random(seed)
    step_ms = 1000.0 / event_rate
    start_ms = int(time.time() * 1000) - int(events * step_ms)  # ending about now
    silent_hosts = {h for h in range(1000) if h % 20 == 0}
    started = time.perf_counter()
    produced = 0
    for i in range(events):
        ident = rng.randrange(identities)
        at_ms = start_ms + int(i * step_ms)
        ev = _event(rng, ident, at_ms, i > events // 2 and ident % 1000 in silent_hosts)
        if ev is None:
            ev = Event(subject=f"host-{ident % 1000}", name="load", time=at_ms, metrics={"load1": 1.0},
                       tags={"class": "client"})
        while True:
            try:
                producer.produce(topic, writer.encode(ev.to_record()), ev.key.encode(), timestamp=ev.time)
                break
            except BufferError:
                producer.poll(0.05)
        produced += 1
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)
    log(f"produced {produced:,} events to {topic} in {time.perf_counter() - started:.1f}s")
    return start_ms, start_ms + int((events - 1) * step_ms)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the backtest's processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _backtest(s: Settings, dirs: tuple[Path, ...], time_range: TimeRange,
              processes: int | None) -> tuple[BacktestResult, float]:
    """A backtest run and the CPU seconds it took (all its processes)."""
    cpu = _cpu_s()
    result = run_backtest(s, BacktestRequest(rules_dirs=dirs, time_range=time_range, processes=processes))
    cpu = _cpu_s() - cpu
    log(f"backtest of {len(dirs)} rule set(s), {result.processes} process(es): {result.read:,} events in "
        f"{result.elapsed_s:.1f}s = {result.events_per_s:,.0f} ev/s, {len(result.actions):,} actions; "
        f"{cpu / result.read * 1e6:.1f} us of CPU per event")
    return result, cpu


def _raw(s: Settings, topic: str, events: int, decode: Any = None) -> tuple[float, float]:
    """The raw loop's events/s and CPU seconds."""
    cpu = _cpu_s()
    eps = raw_consume(s, topic, events, decode)
    return eps, _cpu_s() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--event-rate", type=float, default=1000.0,
                        help="events per second of event time (1000: a fleet of 10,000 identities each every 10 s)")
    parser.add_argument("--processes", type=int, default=None, help="backtest processes (default: one per core)")
    parser.add_argument("--skip-single", action="store_true", help="skip the one-process run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("app.rules.stage").setLevel(logging.ERROR)
    result: dict[str, Any] = {"events": args.events, "identities": args.identities, "event_rate": args.event_rate,
                              "cores": os.cpu_count()}
    with bench_stack() as settings, tempfile.TemporaryDirectory(prefix="vigil-bench-backtest-") as tmp:
        s = _isolated(settings)
        topic = s.topic("events")
        first_ms, last_ms = produce_fleet(s, topic, events=args.events, identities=args.identities,
                                          event_rate=args.event_rate)
        time_range = TimeRange(first_ms, last_ms + 60_000)
        a, b = Path(tmp, "a"), Path(tmp, "b")
        for directory, text in ((a, RULES_A), (b, RULES_B)):
            directory.mkdir()
            (directory / "rules.yaml").write_text(text)
        result["raw_eps"], raw_cpu = _raw(s, topic, args.events, AvroSerde(RegistryClient.from_settings(s)).decode)
        result["raw_cpu_us"] = round(raw_cpu / args.events * 1e6, 2)
        log(f"raw (Vigil's decoder): {result['raw_eps']:,.0f} ev/s, {result['raw_cpu_us']} us of CPU per event")
        result["raw_fastavro_eps"] = _raw(s, topic, args.events)[0]
        log(f"raw (fastavro): {result['raw_fastavro_eps']:,.0f} ev/s")
        single, cpu = _backtest(s, (a,), time_range, args.processes)
        result["processes"] = single.processes
        result["backtest_eps"] = single.events_per_s
        result["backtest_cpu_us"] = round(cpu / single.read * 1e6, 2)
        result["actions"] = len(single.actions)
        result["alerts"] = single.counts.alerts
        compare, cpu = _backtest(s, (a, b), time_range, args.processes)
        result["backtest_compare_eps"] = compare.events_per_s
        result["backtest_compare_cpu_us"] = round(cpu / compare.read * 1e6, 2)
        if not args.skip_single and single.processes > 1:
            one, cpu = _backtest(s, (a,), time_range, 1)
            result["backtest_1p_eps"] = one.events_per_s
            result["backtest_1p_cpu_us"] = round(cpu / one.read * 1e6, 2)
        if [x.id for x in single.actions] != [x.id for x in compare.actions if x.ruleset == 0]:
            raise SystemExit("the compare run's first rule set differs from the single run: not deterministic")
    result["ratio"] = round(result["backtest_eps"] / result["raw_eps"], 3)
    result["compare_slowdown"] = round(result["backtest_eps"] / result["backtest_compare_eps"], 3)
    result["day_86m_s"] = round(86_400_000 / result["backtest_eps"])
    log(f"backtest {result['ratio']} x raw (target {TARGET_RATIO}); compare {result['compare_slowdown']} x the "
        f"single run's time (target {TARGET_COMPARE_SLOWDOWN}); a day of 86.4M events: "
        f"{result['day_86m_s'] / 60:.0f} min")
    result["repo"] = str(REPO)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
