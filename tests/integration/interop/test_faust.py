"""A faust app (examples/faust_alerts_app.py) consumes Vigil events and produces Vigil alerts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from app.model.events import Event
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.sdk import Emitter
from tests.conftest import REPO
from tests.integration.runtime.kafka_helpers import read_topic


def test_faust_app__reads_vigil_events_and_writes_vigil_alerts(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "VIGIL_SCHEMA_REGISTRY_URL": s.schema_registry_url,
           "VIGIL_TOPIC_PREFIX": s.topic_prefix, "FAUST_APP_ID": f"{s.topic_prefix}faust",
           "FAUST_DATADIR": str(tmp_path / "faust")}
    log = tmp_path / "faust.log"
    with open(log, "wb") as out:
        app = str(REPO / "examples" / "faust_alerts_app.py")
        proc = subprocess.Popen([sys.executable, app, "worker", "-l", "warn"], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        emitter = Emitter(s)
        ok_id = emitter.emit(Event(subject="db1", name="disk", severity=0, text="fine"))
        crit_id = emitter.emit(Event(subject="db1", name="disk", severity=2, text="disk full"))
        emitter.close()
        msgs = read_topic(s, s.topic("alerts"), expect=1, timeout_s=120)
    finally:
        proc.terminate()
        proc.wait(30)
    serde = AvroSerde(RegistryClient.from_settings(s))
    decoded = [serde.decode_typed(m.value()) for m in msgs]
    assert [name for name, _ in decoded] == ["vigil.Alert"], log.read_text(errors="replace")[-2000:]
    alert = decoded[0][1]
    assert (alert["subject"], alert["to_state"], alert["cause_event_id"]) == ("db1", "CRITICAL", crit_id)
    assert alert["text"] == "faust saw: disk full" and alert["cause_event_id"] != ok_id
