"""An existing faust app joining Vigil: it consumes Vigil events (Confluent-framed Avro) and
produces Vigil Alerts that every Vigil tool understands.

    VIGIL_KAFKA_BOOTSTRAP=127.0.0.1:9092 VIGIL_SCHEMA_REGISTRY_URL=http://127.0.0.1:8081 \\
        python examples/faust_alerts_app.py worker -l info

Every CRITICAL event becomes an Alert on `alerts` (to_state CRITICAL).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.interop.faust import Alert, Event, register_codecs

PREFIX = os.environ.get("VIGIL_TOPIC_PREFIX", "")
register_codecs(os.environ.get("VIGIL_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"))
app = faust.App(os.environ.get("FAUST_APP_ID", "faust-critical-alerts"),
                broker="kafka://" + os.environ.get("VIGIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                datadir=os.environ.get("FAUST_DATADIR", ".vigil/faust"), web_enabled=False,
                consumer_auto_offset_reset="earliest", topic_disable_leader=True)
events = app.topic(f"{PREFIX}events", key_type=str, value_type=Event, value_serializer="vigil.Event")
alerts = app.topic(f"{PREFIX}alerts", key_type=str, value_type=Alert, value_serializer="vigil.Alert")


@app.agent(events)
async def critical_to_alert(stream: faust.StreamT) -> None:
    async for key, event in stream.items():
        if event.severity >= 2:
            await alerts.send(key=key, value=Alert(
                id=str(uuid.uuid4()), time=int(time.time() * 1000), subject=event.subject, name=event.name,
                from_state="NONE", to_state="CRITICAL", severity=event.severity, cause_event_id=event.id,
                text=f"faust saw: {event.text}"))


if __name__ == "__main__":
    app.main()
