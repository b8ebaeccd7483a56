"""The UI's live tailer on the real Kafka: a status change reaches the board while the history store
has another writer (in `vigil ui`, the metrics tailer writing thousands of closed windows), and the
history records of that time are stored once the store is free."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from app.bus.clients import make_producer
from app.config import Settings
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.web.ingest import IngestBatch, Tailer, live_feeds
from app.web.store import HistoryStore
from tests.conftest import wait_until


def _status(subject: str, state: str, now_ms: int) -> dict[str, Any]:
    return {"subject": subject, "name": "load", "state": state, "since": now_ms, "last_seen": now_ms,
            "last_event_id": "e1", "text": "", "event_count": 1, "transition_count": 1, "flapping": False,
            "ttl": None, "tags": {}}


def _alert(subject: str, now_ms: int) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "time": now_ms, "subject": subject, "name": "load", "from_state": "OK",
            "to_state": "CRITICAL", "severity": 2, "cause_event_id": "e1", "text": "", "flapping": False,
            "tags": {}, "trace_id": None}


def test_a_status_change_is_handed_over_while_another_writer_holds_the_store(isolated_settings: Settings,
                                                                            tmp_path: Path) -> None:
    s = isolated_settings
    registry = RegistryClient.from_settings(s)
    serde = AvroSerde(registry)
    status_writer = serde.writer(builtin_schema("vigil.Status"))
    alert_writer = serde.writer(builtin_schema("vigil.Alert"))
    producer = make_producer(s)
    store = HistoryStore(tmp_path / "history.db")
    batches: list[IngestBatch] = []
    tailer = Tailer(s, live_feeds(3_600_000), store, serde, batches.append, name="live", poll_s=0.05)
    other_writer = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
    subject = f"web-{uuid.uuid4().hex[:6]}"
    try:
        tailer.start()
        assert tailer.caught_up.wait(60), tailer.stats.last_error
        other_writer.execute("BEGIN IMMEDIATE")  # the store's one write lock, held by someone else

        now_ms = int(time.time() * 1000)
        producer.produce(s.topic("status"), status_writer.encode(_status(subject, "CRITICAL", now_ms)),
                         f"{subject}/load".encode())
        producer.flush(30)
        wait_until(lambda: any(st[0] == subject and st[2] is not None and st[2]["state"] == "CRITICAL"
                               for b in batches for st in b.statuses),
                   timeout_s=20, message="the status change handed over while the store is locked")

        alert = _alert(subject, now_ms)
        producer.produce(s.topic("alerts"), alert_writer.encode(alert), f"{subject}/load".encode())
        producer.flush(30)
        other_writer.execute("COMMIT")
        wait_until(lambda: any(kind == "alert" and rec["id"] == alert["id"]
                               for b in batches for kind, rec in b.changes),
                   timeout_s=30, message="the alert handed over once stored")
        assert [a["id"] for a in store.alerts(since_ms=now_ms - 1000, until_ms=now_ms + 1000, limit=10)] \
            == [alert["id"]]
        assert tailer.stats.skipped == 0
    finally:
        other_writer.close()
        tailer.stop()
        store.close()
        producer.flush(10)
        registry.close()
