"""`vigil members` against a real worker: a host that keeps heartbeating stays alive, a silent one
fails when its heartbeat's ttl runs out, and the members topic carries the same."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from click.testing import CliRunner

from app.config import Settings
from app.members.cli import members_command
from app.model.events import Event
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.sdk import Emitter
from tests.conftest import free_port, wait_until
from tests.integration.runtime.kafka_helpers import read_topic, spawn_worker, stop_worker


def test_members__alive_while_heartbeating_failed_after_silence(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings
    port = free_port()
    proc = spawn_worker(s, plugin=[], stages=["pipeline", "members"], app_id=f"m-{uuid.uuid4().hex[:6]}",
                        instance_id="w1", state_dir=tmp_path / "state", log_path=tmp_path / "worker.log",
                        http=f"127.0.0.1:{port}")
    emitter = Emitter(s)

    def beat(host: str) -> None:
        emitter.emit(Event(subject=host, name="heartbeat", ttl=2.0, tags={"role": host.split("-")[0]}))

    def members() -> dict[str, dict]:
        result = CliRunner().invoke(members_command, ["--json", "--worker", f"http://127.0.0.1:{port}"])
        if result.exit_code != 0:
            return {}
        return {m["host"]: m for m in map(json.loads, result.output.splitlines())}

    try:
        beat("web-1")
        beat("db-1")
        got = wait_until(lambda: len(members()) == 2 and members(), timeout_s=90, message="both hosts listed")
        assert {h: (m["state"], m["tags"]) for h, m in got.items()} == {
            "web-1": ("ALIVE", {"role": "web"}), "db-1": ("ALIVE", {"role": "db"})}

        def web_beats_db_fails() -> dict | None:
            beat("web-1")  # keeps flowing while we wait: it must never fail
            now = members()
            assert now.get("web-1", {}).get("state", "ALIVE") == "ALIVE"
            return now if now.get("db-1", {}).get("state") == "FAILED" else None

        final = wait_until(web_beats_db_fails, timeout_s=30, interval_s=0.5, message="db-1 failed after its ttl")
        assert final["web-1"]["state"] == "ALIVE"
        serde = AvroSerde(RegistryClient.from_settings(s))
        latest = {}
        for m in read_topic(s, s.topic("members"), expect=3):
            record = serde.decode(m.value())
            latest[record["host"]] = record["state"]
        assert latest == {"web-1": "ALIVE", "db-1": "FAILED"}
    finally:
        emitter.close()
        stop_worker(proc)
