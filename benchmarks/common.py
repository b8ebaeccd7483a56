"""Shared benchmark plumbing: a Kafka + registry to run against, a dataset of Avro events on a
fresh topic, and the raw-consumer baseline (the Python limit every system is compared with).

Benchmarks print human-readable lines on stderr and, with --json, one JSON object as the last
line of stdout. Absolute numbers depend on the machine; compare the ratios from one run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, TopicPartition
from fastavro import schemaless_reader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.bus.clients import make_admin, make_consumer, make_producer, wait_for_kafka  # noqa: E402
from app.config import Settings, load_settings  # noqa: E402
from app.model.events import Event, Kind  # noqa: E402
from app.model.schemas import builtin_schema  # noqa: E402
from app.model.serde import AvroSerde  # noqa: E402
from app.registry.client import RegistryClient  # noqa: E402
from app.topics.admin import reconcile  # noqa: E402
from app.topics.spec import TopicSpec  # noqa: E402

__all__ = ["bench_stack", "create_topic", "emit_json", "log", "make_decoder", "produce_dataset", "raw_consume"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def bench_stack() -> Iterator[Settings]:
    """Settings for an existing stack (VIGIL_KAFKA_BOOTSTRAP + VIGIL_SCHEMA_REGISTRY_URL), or a
    private Kafka + Vigil registry started for this run (data in a temp dir, removed after)."""
    if os.environ.get("VIGIL_KAFKA_BOOTSTRAP"):
        settings = load_settings()
        wait_for_kafka(settings, timeout_s=30)
        yield settings
        return
    from app.devstack.kafka import free_port, start_private_kafka
    from app.registry.server import start_registry_in_thread

    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        home = Path(tmp)
        node = start_private_kafka(home, libs_dir=REPO / ".vigil" / "kafka" / "libs", heap="-Xms512m -Xmx2g")
        try:
            settings = load_settings(kafka_bootstrap=node.bootstrap, state_dir=home / "state", home=home)
            reg = start_registry_in_thread(settings, host="127.0.0.1", port=free_port())
            try:
                yield settings.model_copy(update={"schema_registry_url": reg.url})
            finally:
                reg.stop()
        finally:
            node.stop()


def create_topic(settings: Settings, name: str, partitions: int, **config: str) -> str:
    reconcile(make_admin(settings), [TopicSpec(name=name, partitions=partitions, replication=1, config=config)],
              dry_run=False)
    return name


def produce_dataset(settings: Settings, *, events: int, identities: int, partitions: int = 6,
                    seed: int = 42, rate_eps: float | None = None) -> str:
    """A fresh topic holding `events` vigil.Event records over `identities` keys (metric load1,
    ttl on a tenth of them, some non-OK severities). Returns the topic name."""
    topic = create_topic(settings, f"bench-{uuid.uuid4().hex[:8]}", partitions)
    serde = AvroSerde(RegistryClient.from_settings(settings))
    writer = serde.writer(builtin_schema("vigil.Event"))
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    rng = random.Random(seed)
    start_ms = int(time.time() * 1000) - events  # 1 ms apart, ending about now
    started = time.perf_counter()
    for i in range(events):
        ident = rng.randrange(identities)
        ev = Event(subject=f"host-{ident % 1000}", name=f"load-{ident // 1000}", time=start_ms + i, kind=Kind.METRIC,
                   severity=0 if rng.random() < 0.97 else rng.choice((1, 2)), origin="bench",
                   metrics={"load1": rng.random() * 40}, tags={"class": "client" if ident % 2 else "server"},
                   ttl=60.0 if ident % 10 == 0 else None)
        while True:
            try:
                producer.produce(topic, writer.encode(ev.to_record()), ev.key.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
            if rate_eps:
                ahead = i / rate_eps - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    producer.flush(120)
    log(f"produced {events} events to {topic} in {time.perf_counter() - started:.1f}s")
    return topic


def make_decoder(settings: Settings) -> Any:
    """The plainest Confluent-Avro decode: writer schema by id (cached) + fastavro schemaless_reader.
    The raw loops and the peer systems decode with this. Vigil's worker decodes with its own serde,
    whose compiled reader (app.model.avro_reader) is several times faster when built: the pipeline
    benchmark also reports the raw loop with that decoder (raw_vigil_decode_eps)."""
    from app.model.schemas import parse_schema_text

    registry = RegistryClient.from_settings(settings)
    parsed: dict[int, Any] = {}

    def decode(data: bytes) -> dict:
        schema_id = int.from_bytes(data[1:5], "big")
        schema = parsed.get(schema_id)
        if schema is None:
            schema = parsed[schema_id] = parse_schema_text(registry.schema_by_id(schema_id)).parsed
        buf = io.BytesIO(data)
        buf.seek(5)
        # every schema here is a record (a cast, not a check: this is the raw loop being timed)
        return cast(dict, schemaless_reader(buf, schema, None))

    return decode


def raw_consume(settings: Settings, topic: str, events: int, decode: Any = None) -> float:
    """The Python limit: confluent-kafka consume + fastavro decode (or `decode`) + dict update.
    Returns events/s measured from the first record to the last."""
    decode = decode or make_decoder(settings)
    consumer: Consumer = make_consumer(settings, f"raw-{uuid.uuid4().hex[:6]}", **{"fetch.min.bytes": 1})
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    sums: dict[bytes, float] = {}
    n = 0
    first = 0.0
    while n < events:
        msgs = consumer.consume(20_000, timeout=1.0)
        if not first and msgs:
            first = time.perf_counter()
        for msg in msgs:
            if msg.error():
                continue
            record = decode(msg.value())
            key = msg.key()
            sums[key] = sums.get(key, 0.0) + record["metrics"].get("load1", 0.0)
            n += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return n / elapsed


@dataclass(frozen=True)
class ProcStat:
    """What a Linux /proc/<pid>/stat (or a thread's task/<tid>/stat) line says that benchmarks use."""

    name: str
    parent_pid: int
    cpu_s: float  # user + system


def read_proc_stat(path: str) -> ProcStat | None:
    """The stat file at `path`, or None when it cannot be read (ended, or not Linux)."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the name, which may hold spaces and parentheses
    return ProcStat(name=stat[stat.index("(") + 1:stat.rindex(")")], parent_pid=int(fields[1]),
                    cpu_s=(int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far (Linux /proc; 0.0 when it
    cannot be read, e.g. it has ended)."""
    stat = read_proc_stat(f"/proc/{pid}/stat")
    return stat.cpu_s if stat is not None else 0.0


def emit_json(result: dict[str, Any], as_json: bool) -> None:
    for k, v in result.items():
        shown = (f"{v:,.0f}" if v >= 10 else f"{v:.3f}") if isinstance(v, float) else v
        log(f"{k:>16}: {shown}")
    if as_json:
        print(json.dumps(result))
