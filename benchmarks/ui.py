"""UI benchmark: `vigil ui` with 50,000 identities, fed by a real `vigil worker` from a private Kafka.

    python benchmarks/ui.py [--identities 50000] [--requests 200] [--rate 5000] [--samples 30] [--json]

1. Loads N identities (one STATUS event each, 2 % of them not OK, tags role and dc) and waits until
   the UI's status index holds all of them.
2. API: filtered status pages (subject glob, state, tag, name + sort by last change, a deep page
   sorted by state, the grouped board), `--requests` each, from one keep-alive client: p50/p95.
3. Browser (Debian's chromium, headless, Playwright): the board's first rows after navigation (and
   the first contentful paint), then scroll jumps (until the rows in view are loaded) and filter
   changes (until the rows shown match it): p50/p95 of each action, measured in the page.
4. Live: while a producer sends `--rate` events/s (OK metric events of the loaded identities, as a
   bridge's producer sends them), one CRITICAL event for a new identity every ~0.7 s; latency = when
   its row appears on the open board (a MutationObserver in the page) - when it was handed to the
   producer (same clock: one machine). p50/p95 over `--samples`.

Kafka: VIGIL_KAFKA_BOOTSTRAP/VIGIL_SCHEMA_REGISTRY_URL if set, else a throwaway one
(common.bench_stack). The last stdout line with --json is the result object.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import REPO, bench_stack, emit_json, log
from confluent_kafka import OFFSET_END, TopicPartition

from app.bus.clients import PRODUCER_DEFAULTS, make_admin, make_consumer, make_producer, take_available
from app.config import Settings
from app.model.ids import new_id
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from app.web.testing import UiStack

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STATES = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2)  # 2 % not OK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def identity(i: int) -> tuple[str, str]:
    return f"host{i // 10:05d}", f"check{i % 10}"


class Producer:
    """Vigil events as a bridge sends them (PRODUCER_DEFAULTS: linger 5 ms)."""

    def __init__(self, settings: Settings) -> None:
        self.registry = RegistryClient.from_settings(settings)
        self.writer = AvroSerde(self.registry).writer(builtin_schema("vigil.Event"))
        self.producer = make_producer(settings, **PRODUCER_DEFAULTS)
        self.topic = settings.topic("events")

    def send(self, subject: str, name: str, **fields: Any) -> None:
        record = {"id": new_id(), "time": int(time.time() * 1000), "subject": subject, "name": name,
                  "kind": "STATUS", "severity": None, "origin": "bench", "text": "", "tags": {}, "metrics": {},
                  "ttl": None, "extended": None, "trace_id": None, **fields}
        value = self.writer.encode(record)
        while True:
            try:
                self.producer.produce(self.topic, value, f"{subject}/{name}".encode())
                return
            except BufferError:
                self.producer.poll(0.01)

    def close(self) -> None:
        self.producer.flush(60)
        self.registry.close()


def load_identities(stack: UiStack, producer: Producer, count: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    for i in range(count):
        subject, name = identity(i)
        producer.send(subject, name, severity=rng.choice(STATES), text=f"{name} on {subject}",
                      tags={"role": ("web", "db", "cache", "lb")[i % 4], "dc": f"dc{i % 3}"})
        if i % 5000 == 0:
            producer.producer.poll(0)
    producer.producer.flush(120)
    with httpx.Client(base_url=stack.ui_url, timeout=30) as http:
        while http.get("/api/v1/info").json()["identities"] < count:
            if time.perf_counter() - started > 600:
                raise TimeoutError("the UI did not see every identity within 10 minutes")
            time.sleep(0.5)
    return time.perf_counter() - started


def queries(rng: random.Random, identities: int) -> dict[str, Any]:
    """The filtered pages asked for, different each time (nothing answered from a cache of the last)."""
    hosts = identities // 10
    return {
        "subject_glob": lambda: {"subject": f"host{rng.randrange(hosts // 100 or 1):03d}*"},
        "state": lambda: {"state": rng.choice(["CRITICAL", "WARNING", "OK"]), "offset": rng.randrange(200)},
        "tag": lambda: {"tag": f"role={rng.choice(['web', 'db', 'cache', 'lb'])}", "state": "WARNING,CRITICAL"},
        "name_recent": lambda: {"name": f"check{rng.randrange(10)}", "sort": "-since", "limit": 100},
        "deep_page_by_state": lambda: {"sort": "state", "offset": rng.randrange(identities), "limit": 100},
        "tag_dc_by_name": lambda: {"tag": f"dc=dc{rng.randrange(3)}", "sort": "name", "offset": rng.randrange(1000)},
        "groups": lambda: {"group_by": rng.choice(["tag:dc", "tag:role", "subject"]), "per_line": 8,
                           "offset": rng.randrange(100), "flapping": rng.choice(["true", "false"])},
    }


def api_latency(stack: UiStack, requests: int, identities: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    every: list[float] = []
    rng = random.Random(5)
    with httpx.Client(base_url=f"{stack.ui_url}/api/v1", timeout=30) as http:
        for label, make in queries(rng, identities).items():
            path = "/status/groups" if label == "groups" else "/status"
            http.get(path, params=make()).raise_for_status()  # warm
            times = []
            for _ in range(requests):
                params = make()
                t = time.perf_counter()
                resp = http.get(path, params=params)
                times.append((time.perf_counter() - t) * 1000)
                resp.raise_for_status()
            every += times
            out[f"api_{label}_p95_ms"] = round(pct(times, 95), 1)
            log(f"  {label:>20}: p50 {pct(times, 50):6.1f} ms  p95 {pct(times, 95):6.1f} ms  "
                f"({resp.json().get('total', resp.json().get('total_lines'))} matching)")
    out["api_status_p50_ms"] = round(pct(every, 50), 1)
    out["api_status_p95_ms"] = round(pct(every, 95), 1)
    return out


# Measured inside the page: time from the action to the DOM showing its result.
SCROLL_JS = """async (y) => {
  const list = document.querySelector('.vlist');
  const t0 = performance.now();
  list.scrollTop = y;
  const ready = () => {
    const rows = [...list.querySelectorAll('.vrow')];
    const top = list.scrollTop, bottom = top + list.clientHeight;
    const inView = rows.filter(r => {
      const ty = parseFloat(r.style.transform.slice(11));
      return ty + 30 > top && ty < bottom;
    });
    return inView.length > 0 && inView.every(r => r.querySelector('[data-testid=status-row]'));
  };
  while (!ready()) { await new Promise(r => requestAnimationFrame(r)); if (performance.now() - t0 > 10000) return -1; }
  return performance.now() - t0;
}"""

FILTER_JS = """async (glob) => {
  const input = document.querySelector('input[name=subject]');
  const t0 = performance.now();
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  setter.call(input, glob);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.form.requestSubmit();
  const prefix = glob.replace('*', '');
  const ready = () => {
    const rows = [...document.querySelectorAll('[data-testid=status-row]')];
    return rows.length > 0 && rows.every(r => r.dataset.subject.startsWith(prefix));
  };
  while (!ready()) { await new Promise(r => requestAnimationFrame(r)); if (performance.now() - t0 > 10000) return -1; }
  return performance.now() - t0;
}"""

WATCH_JS = """() => {
  window.__seen = {};
  window.__streamed = {};
  const stream = new EventSource('/api/v1/stream?kinds=status');
  stream.addEventListener('status', (ev) => {
    const s = JSON.parse(ev.data).subject;
    if (s.startsWith('aaa-') && !(s in window.__streamed)) window.__streamed[s] = Date.now();
  });
  const note = () => {
    for (const r of document.querySelectorAll('[data-testid=status-row][data-state=CRITICAL]')) {
      const s = r.dataset.subject;
      if (s.startsWith('aaa-') && !(s in window.__seen)) window.__seen[s] = Date.now();
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
  note();
}"""


#: The CRITICAL event's way to the board, hop by hop (see HopProbe).
HOPS = ("to_kafka", "kafka_to_worker_output", "worker_output_to_kafka", "kafka_to_stream", "stream_to_board")


class HopProbe:
    """Where a live CRITICAL event's time goes: a consumer in this process notes, per bench subject,
    when the event could be read from `events` (after this process's producer and the broker), the
    status record's timestamp (the worker's produce() call: CreateTime) and when that record could be
    read from `status`; the page notes the SSE event and the board row. It also samples the worker's
    consumer lag (its /metrics) every second. Reads are noted when this process gets to them: on a
    busy machine its own scheduling delays count."""

    def __init__(self, stack: UiStack) -> None:
        self.stack = stack
        self.event_read_ms: dict[str, float] = {}
        self.produced_ms: dict[str, float] = {}
        self.read_ms: dict[str, float] = {}
        self.lag: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._tail, daemon=True),
                         threading.Thread(target=self._sample_lag, daemon=True)]

    def start(self) -> HopProbe:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _tail(self) -> None:
        settings = self.stack.settings
        status_topic = settings.topic("status")
        registry = RegistryClient.from_settings(settings)
        serde = AvroSerde(registry)
        consumer = make_consumer(settings, f"ui-bench-probe-{uuid.uuid4().hex[:8]}", **{
            "isolation.level": "read_committed", "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
        try:
            assignment = []
            for topic in (settings.topic("events"), status_topic):
                parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                assignment += [TopicPartition(topic, p, OFFSET_END) for p in parts]
            consumer.assign(assignment)
            while not self._stop.is_set():
                for msg in take_available(consumer, 10_000, 0.05):
                    key = msg.key()
                    if msg.error() is not None or msg.value() is None or not key or not key.startswith(b"aaa-"):
                        continue
                    now_ms = time.time() * 1000
                    subject = key.decode().partition("/")[0]
                    if msg.topic() != status_topic:
                        self.event_read_ms.setdefault(subject, now_ms)
                    else:
                        if subject not in self.read_ms and serde.decode(msg.value())["state"] == "CRITICAL":
                            self.read_ms[subject] = now_ms
                            self.produced_ms[subject] = float(msg.timestamp()[1])
        finally:
            consumer.close()
            registry.close()

    def _sample_lag(self) -> None:
        with httpx.Client(base_url=self.stack.worker_url, timeout=5) as http:
            while not self._stop.wait(1.0):
                try:
                    text = http.get("/metrics").text
                except httpx.HTTPError:
                    continue
                self.lag.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                    if line.startswith("vigil_consumer_lag{")))

    def hops(self, emitted: dict[str, float], streamed: dict[str, float], seen: dict[str, float]) -> dict[str, Any]:
        """p50/p95 of each hop (HOPS) over the samples that reached its end."""
        marks = [emitted, self.event_read_ms, self.produced_ms, self.read_ms, streamed, seen]
        out: dict[str, Any] = {}
        for hop, start, end in zip(HOPS, marks[:-1], marks[1:], strict=True):
            spans = [end[s] - start[s] for s in emitted if s in start and s in end]
            out[f"hop_{hop}_p50_ms"] = round(pct(spans, 50), 1)
            out[f"hop_{hop}_p95_ms"] = round(pct(spans, 95), 1)
        out["worker_lag_max"] = round(max(self.lag, default=float("nan")))
        out["worker_lag_mean"] = round(sum(self.lag) / len(self.lag)) if self.lag else float("nan")
        return out


def browser_timings(stack: UiStack, identities: int, samples: int, rate: float,
                    producer: Producer) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{stack.ui_url}/healthz")  # the browser itself is started and warm
        firsts, fcps = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            page.goto(f"{stack.ui_url}/")
            page.wait_for_selector("[data-testid=status-row]")
            firsts.append((time.perf_counter() - t0) * 1000)
            fcps.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"))
        out["board_first_rows_p50_ms"] = round(pct(firsts, 50), 1)
        out["board_first_rows_max_ms"] = round(max(firsts), 1)
        out["board_fcp_ms"] = round(pct(fcps, 50), 1)
        rng = random.Random(3)
        scrolls = [page.evaluate(SCROLL_JS, rng.randrange(0, identities * 30)) for _ in range(20)]
        out["scroll_p50_ms"] = round(pct(scrolls, 50), 1)
        out["scroll_p95_ms"] = round(pct(scrolls, 95), 1)
        filters = [page.evaluate(FILTER_JS, f"host{rng.randrange(0, identities // 10):05d}*") for _ in range(10)]
        filters += [page.evaluate(FILTER_JS, f"host0{rng.randrange(0, 99):02d}*") for _ in range(10)]
        out["filter_p50_ms"] = round(pct(filters, 50), 1)
        out["filter_p95_ms"] = round(pct(filters, 95), 1)
        log(f"  board first rows p50 {out['board_first_rows_p50_ms']} ms (FCP {out['board_fcp_ms']} ms); "
            f"scroll p95 {out['scroll_p95_ms']} ms; filter p95 {out['filter_p95_ms']} ms")
        out.update(live_latency(stack, page, samples, rate, identities, producer))
        browser.close()
    return out


def live_latency(stack: UiStack, page: Any, samples: int, rate: float, identities: int,
                 producer: Producer) -> dict[str, Any]:
    page.goto(f"{stack.ui_url}/")  # sorted worst first: CRITICAL rows on top
    page.wait_for_selector("[data-testid=status-row]")
    page.wait_for_selector("[data-testid=connection]:text('live')")
    page.evaluate(WATCH_JS)
    stop = threading.Event()
    sent = [0]

    def load() -> None:  # OK metric events of the loaded identities at `rate`
        rng = random.Random(11)
        started = time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate)
            while sent[0] < due:
                subject, name = identity(rng.randrange(identities))
                producer.send(subject, name, severity=0, kind="METRIC", metrics={"value": rng.random()})
                sent[0] += 1
            producer.producer.poll(0)
            time.sleep(0.005)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    probe = HopProbe(stack).start()
    time.sleep(3)  # the flow is steady before the first sample
    processes = {name: psutil.Process(proc.pid) for name, proc in stack._procs}
    processes["bench"] = psutil.Process()  # the producer, the probe and Playwright's driver
    load_1m = [os.getloadavg()[0]]  # the machine's: other work on it slows every hop
    for p in processes.values():
        p.cpu_percent(None)
    emitted: dict[str, float] = {}
    started = time.perf_counter()
    for k in range(samples):
        subject = f"aaa-{999 - k:03d}"  # newest sorts first among the CRITICAL rows
        emitted[subject] = time.time() * 1000
        producer.send(subject, "alarm", severity=2, text="bench")
        time.sleep(0.7)
    deadline = time.monotonic() + 30
    seen: dict[str, float] = {}
    while time.monotonic() < deadline and len(seen) < len(emitted):
        seen = page.evaluate("window.__seen")
        time.sleep(0.2)
    cpu = {f"cpu_{name}_pct": round(p.cpu_percent(None)) for name, p in processes.items()}
    load_1m.append(os.getloadavg()[0])
    stop.set()
    loader.join(10)
    probe.stop()
    achieved = sent[0] / (time.perf_counter() - started + 3)
    streamed = page.evaluate("window.__streamed")
    latencies = [seen[s] - t for s, t in emitted.items() if s in seen]
    to_stream = [streamed[s] - t for s, t in emitted.items() if s in streamed]
    missing = len(emitted) - len(latencies)
    out = {"critical_to_board_p50_ms": round(pct(latencies, 50), 1),
           "critical_to_board_p95_ms": round(pct(latencies, 95), 1),
           "critical_to_stream_p50_ms": round(pct(to_stream, 50), 1),
           "critical_to_stream_p95_ms": round(pct(to_stream, 95), 1),
           "critical_to_board_missing": missing, "load_eps": round(achieved), **cpu,
           "loadavg_1m": [round(x, 1) for x in load_1m], "cpus": os.cpu_count(),
           **probe.hops(emitted, streamed, seen)}
    log(f"  CRITICAL to board under {achieved:,.0f} events/s: p50 {out['critical_to_board_p50_ms']} ms, "
        f"p95 {out['critical_to_board_p95_ms']} ms ({missing} not seen within 30 s); to the stream "
        f"(worker + UI server) p50 {out['critical_to_stream_p50_ms']} ms, p95 {out['critical_to_stream_p95_ms']} ms")
    log("  per hop (p50 / p95 ms): " + "; ".join(
        f"{hop} {out[f'hop_{hop}_p50_ms']} / {out[f'hop_{hop}_p95_ms']}" for hop in HOPS)
        + f"; worker lag max {out['worker_lag_max']} records (mean {out['worker_lag_mean']})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per API query")
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s during the live measurement")
    parser.add_argument("--samples", type=int, default=30, help="CRITICAL events timed to the board")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "ui", "identities": args.identities}
    with bench_stack() as settings, tempfile.TemporaryDirectory(prefix="vigil-ui-bench-") as tmp:
        prefix = f"ub{uuid.uuid4().hex[:6]}-"
        s = settings.model_copy(update={"topic_prefix": prefix})
        reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
        with UiStack(s, Path(tmp), executor=False, ui_process=True).start() as stack:
            producer = Producer(s)
            try:
                log(f"loading {args.identities:,} identities ...")
                result["load_s"] = round(load_identities(stack, producer, args.identities), 1)
                log(f"  loaded in {result['load_s']} s; API:")
                result.update(api_latency(stack, args.requests, args.identities))
                result.update(browser_timings(stack, args.identities, args.samples, args.rate, producer))
            finally:
                producer.close()
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
