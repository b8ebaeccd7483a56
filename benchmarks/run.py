"""Runtime benchmark: a per-identity sum of one metric over N Avro events, in the same run and on
the same topic, for (a) raw confluent-kafka + fastavro (the Python limit), (b) a Vigil agent with a
RocksDB table + changelog at-least-once, (b') the same exactly-once, (c) Quix Streams, (d) faust.

    python benchmarks/run.py [--events 1000000] [--identities 10000] [--json]

Each rate is measured from the first record processed to the N-th (start-up excluded).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import REPO, bench_stack, emit_json, log, produce_dataset, raw_consume

from app.config import Settings
from app.runtime.agent import AgentRegistry, agent
from app.runtime.tables import Table
from app.runtime.worker import Guarantee, Worker, WorkerOptions

__all__ = ["vigil_eps"]


def _measure(processed: callable, events: int, timeout_s: float) -> float:
    """Poll a processed-count function: rate between the first record and the N-th."""
    deadline = time.monotonic() + timeout_s
    first = 0.0
    while time.monotonic() < deadline:
        n = processed()
        now = time.perf_counter()
        if n and not first:
            first = now
        if n >= events:
            return events / (now - first)
        time.sleep(0.005)
    raise TimeoutError(f"only {processed()} of {events} processed in {timeout_s}s")


def vigil_eps(settings: Settings, topic: str, events: int, guarantee: Guarantee) -> float:
    """Events/s of a Vigil agent summing load1 per identity in a RocksDB table with changelog."""
    registry = AgentRegistry()
    sums = Table("sums", default=0.0)

    @agent(topic, name="bench_sum", tables=[sums], registry=registry)
    def bench_sum(event: dict, ctx) -> None:
        sums[ctx.key] += event["metrics"].get("load1", 0.0)

    with tempfile.TemporaryDirectory(prefix="vigil-bench-state-") as state:
        s = settings.model_copy(update={"state_dir": Path(state)})
        worker = Worker(s, registry.agents(), WorkerOptions(app_id=f"bench-{uuid.uuid4().hex[:6]}",
                                                            guarantee=guarantee, instance_id="bench"))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            return _measure(lambda: worker.engine.stats["bench_sum"].events_in, events, timeout_s=600)
        finally:
            worker.stop()
            thread.join(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--faust-events", type=int, default=100_000,
                        help="faust is measured on the first N events only (it is ~30x slower)")
    parser.add_argument("--skip", action="append", default=[], choices=["raw", "vigil", "eos", "quix", "faust"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"events": args.events}
    with bench_stack() as settings:
        topic = produce_dataset(settings, events=args.events, identities=args.identities, partitions=args.partitions)
        if "raw" not in args.skip:
            result["raw_eps"] = raw_consume(settings, topic, args.events)
            log(f"raw: {result['raw_eps']:,.0f} ev/s")
        if "vigil" not in args.skip:
            result["vigil_eps"] = vigil_eps(settings, topic, args.events, Guarantee.AT_LEAST_ONCE)
            log(f"vigil at-least-once: {result['vigil_eps']:,.0f} ev/s")
        if "eos" not in args.skip:
            result["vigil_eos_eps"] = vigil_eps(settings, topic, args.events, Guarantee.EXACTLY_ONCE)
            log(f"vigil exactly-once: {result['vigil_eos_eps']:,.0f} ev/s")
        if "quix" not in args.skip:
            from peers import quix_eps

            result["quix_eps"] = quix_eps(settings, topic, args.events)
            log(f"quix: {result['quix_eps']:,.0f} ev/s")
        if "faust" not in args.skip:
            from peers import faust_eps

            result["faust_events"] = min(args.faust_events, args.events)
            result["faust_eps"] = faust_eps(settings, topic, min(args.faust_events, args.events))
            log(f"faust: {result['faust_eps']:,.0f} ev/s")
    raw = result.get("raw_eps")
    if isinstance(raw, float):
        for k in ("vigil_eps", "vigil_eos_eps", "quix_eps", "faust_eps"):
            if isinstance(result.get(k), float):
                result[f"{k[:-4]}_vs_raw"] = round(result[k] / raw, 3)
    if isinstance(result.get("vigil_eps"), float) and isinstance(result.get("quix_eps"), float):
        result["vigil_vs_quix"] = round(result["vigil_eps"] / result["quix_eps"], 3)
    result["repo"] = str(REPO)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
