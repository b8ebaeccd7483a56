"""The same per-identity sum in the peers: Quix Streams (in-process) and faust-streaming (a real
`faust worker` subprocess using Vigil's faust codec). Each returns events/s from first to N-th."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import REPO, log, make_decoder

from app.config import Settings

__all__ = ["faust_eps", "quix_eps"]


def quix_eps(settings: Settings, topic: str, events: int) -> float:
    """Quix Streams: stateful per-key sum (RocksDB state with changelog), at-least-once."""
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    decode = make_decoder(settings)

    class ConfluentAvro(Deserializer):
        """Same decode as the raw baseline (Quix's registry-backed deserializer adds schema
        resolution per message through confluent's AvroDeserializer; that is not Quix's cost)."""

        def __call__(self, value: bytes, ctx) -> dict:
            return decode(value)

    marks = {"n": 0, "first": 0.0, "last": 0.0}
    with tempfile.TemporaryDirectory(prefix="quix-state-") as state:
        app = Application(broker_address=settings.kafka_bootstrap, consumer_group=f"quix-{uuid.uuid4().hex[:6]}",
                          auto_offset_reset="earliest", state_dir=state, loglevel="WARNING",
                          processing_guarantee="at-least-once", commit_interval=5.0)  # as Vigil's default
        sdf = app.dataframe(app.topic(topic, value_deserializer=ConfluentAvro()))

        def add(value: dict, state) -> None:
            state.set("sum", state.get("sum", 0.0) + value["metrics"].get("load1", 0.0))
            marks["n"] += 1
            if marks["n"] == 1:
                marks["first"] = time.perf_counter()
            elif marks["n"] == events:
                marks["last"] = time.perf_counter()
                app.stop()

        sdf.update(add, stateful=True)
        app.run()
    return events / (marks["last"] - marks["first"])




def faust_eps(settings: Settings, topic: str, events: int, *, partitions: int = 6, timeout_s: float = 900) -> float:
    """faust-streaming agent + RocksDB table, decoding with Vigil's faust codec."""
    with tempfile.TemporaryDirectory(prefix="faust-bench-") as tmp:
        app_file = Path(__file__).with_name("faust_sum_app.py")
        result = Path(tmp) / "result.json"
        env = {**os.environ, "VIGIL_REPO": str(REPO), "VIGIL_REGISTRY": settings.schema_registry_url,
               "VIGIL_BOOTSTRAP": settings.kafka_bootstrap, "BENCH_EVENTS": str(events),
               "BENCH_APP_ID": f"faust-{uuid.uuid4().hex[:6]}", "BENCH_DATADIR": str(Path(tmp) / "data"),
               "BENCH_TOPIC": topic, "BENCH_PARTITIONS": str(partitions), "BENCH_RESULT": str(result)}
        logf = Path(tmp) / "faust.log"
        with open(logf, "wb") as out:
            proc = subprocess.Popen([sys.executable, str(app_file), "worker", "-l", "warn"], cwd=tmp, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not result.exists():
            log(logf.read_text(errors="replace")[-3000:])
            raise RuntimeError(f"faust run did not finish (exit {proc.returncode})")
        return float(json.loads(result.read_text())["eps"])
