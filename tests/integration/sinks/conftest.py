"""A worker running the pipeline (1-s windows, no grace: windows close as soon as a later event
arrives) and the sinks stage on the session's Kafka, with helpers to emit events that close known
windows and to read the worker's /metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.bus.clients import make_admin
from app.config import Settings
from app.runtime.stage import Stage, combine
from app.runtime.worker import Worker, WorkerOptions
from app.sdk import Emitter
from app.sinks.config import sinks_on
from app.stages import build_stages
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port, wait_until
from tests.integration.runtime.kafka_helpers import worker_thread

S = 1000
#: Fast retries, small batches leaving soon: the tests wait on conditions, never on these.
DELIVERY = {"batch_delay": "100ms", "retry_initial": "100ms", "retry_max": "500ms", "timeout": "30s"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class SinksWorker:
    settings: Settings
    app_id: str
    worker: Worker
    url: str
    emitter: Emitter
    #: event time after every event sent so far: with no grace, an event behind its partition's
    #: event-time watermark would be late (not counted in any window)
    next_t0_ms: int = 0

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The worker's /metrics, parsed by prometheus_client: {(name, sorted labels): value}."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def counter(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)

    def emit_windows(self, subject: str) -> list[tuple[int, float]]:
        """Events of `subject`/load 400 ms apart (load1 = 0, 1, 2, ...) over 2.8 s, about 20 s ago,
        that close two 1-s windows: [(window start ms, mean)] of those two."""
        t0 = max((int(time.time() * 1000) // S - 20) * S, self.next_t0_ms)
        self.next_t0_ms = t0 + 4 * S
        for i in range(8):
            self.emitter.emit(subject=subject, name="load", kind="METRIC", time=t0 + i * 400,
                              metrics={"load1": float(i)})
        return [(t0, 1.0), (t0 + S, 3.5)]


@pytest.fixture(scope="module")
def sinks_worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Callable[..., AbstractContextManager[SinksWorker]]]:
    """Factory: `with sinks_worker(prometheus={}, graphite={...}) as w:` a worker (pipeline + sinks
    with those sections enabled) on topics of its own, stopped (and its sinks closed) on exit.
    `restart_of=w` makes it the same worker again (topics, consumer group, state_dir)."""

    @contextmanager
    def start(*, restart_of: SinksWorker | None = None, **sinks: dict[str, Any]) -> Iterator[SinksWorker]:
        if restart_of is None:
            prefix, app_id = f"sk{uuid.uuid4().hex[:8]}-", f"sk-{uuid.uuid4().hex[:6]}"
            state_dir: Path = tmp_path_factory.mktemp("sinks-state")
        else:
            prefix, app_id = restart_of.settings.topic_prefix, restart_of.app_id
            state_dir = restart_of.settings.state_dir
        s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": state_dir,
                                        "pipeline": {"window_sizes": ["1s"], "grace": 0, "close_spread": 0}})
        s = sinks_on(s, **sinks)
        reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
        parts = combine(build_stages(s, ["pipeline", "sinks"]))
        port = free_port()
        options = WorkerOptions(app_id=app_id, instance_id="w1", commit_interval_ms=200, http_port=port)
        try:
            with worker_thread(s, Stage("test", parts.agents, parts.routes, parts.collectors), options) as worker:
                wait_until(lambda: len(worker.engine.assigned()) == 12, timeout_s=60,
                           message="events and metrics partitions assigned")
                emitter = Emitter(s)
                try:
                    yield SinksWorker(s, app_id, worker, f"http://127.0.0.1:{port}", emitter)
                finally:
                    emitter.close()
        finally:
            parts.close()

    yield start
