"""The id index is local-only (no changelog): after the worker's local state is lost, the restart
restores the changelogged tables from Kafka and re-derives the index from them, so every event is
still found by its id, at the same partition and offset."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from app.bus.clients import make_admin
from app.config import Settings
from app.model.events import Event
from app.pipeline.agents import build_pipeline
from app.pipeline.archive import PAGE_SIZE
from app.runtime.worker import WorkerOptions
from app.sdk import Emitter
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from tests.conftest import REPO, wait_until
from tests.integration.runtime.kafka_helpers import worker_thread


def test_id_index__rebuilt_from_changelogs_after_the_local_state_is_lost(settings: Settings, tmp_path: Path) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}-"
    s = settings.model_copy(update={"topic_prefix": prefix, "state_dir": tmp_path / "state"})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    pipeline = build_pipeline()
    options = WorkerOptions(app_id="rebuild", instance_id="w1", commit_interval_ms=200)
    # one identity with more than a page of events (pages and waiting references), others with one
    events = [Event(subject="busy", name="svc", metrics={"v": float(i)}) for i in range(PAGE_SIZE + 5)]
    events += [Event(subject=f"quiet-{i}", name="svc") for i in range(20)]
    emitter = Emitter(s)
    for event in events:
        emitter.emit(event)
    emitter.close()
    with worker_thread(s, [pipeline.agent], options) as worker:
        wait_until(lambda: all(pipeline.archive.lookup(e.id) for e in events), timeout_s=60,
                   message="every event indexed")
        before = {e.id: pipeline.archive.lookup(e.id) for e in events}
        committed = worker.commit_count
        wait_until(lambda: worker.commit_count > committed + 1, timeout_s=30, message="a commit after indexing")
    shutil.rmtree(tmp_path / "state")
    with worker_thread(s, [pipeline.agent], options) as worker:
        wait_until(lambda: len(worker.engine.assigned()) == 6, timeout_s=60, message="partitions assigned")
        after = {e.id: pipeline.archive.lookup(e.id) for e in events}
    assert after == before
