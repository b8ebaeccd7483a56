"""Beacons against the real Kafka of the test session: events read back from the events topic,
and events spooled while Kafka was unreachable delivered oldest first once it is there."""

from __future__ import annotations

import socket
import textwrap
import uuid
from pathlib import Path

from click.testing import CliRunner

from app.beacons.assembly import build_beacons, open_publisher
from app.beacons.cli import beacon_group
from app.beacons.config import BeaconsConfig, load_beacons_config
from app.beacons.runner import Runner
from app.cli import CliContext
from app.config import Settings
from app.model.events import Event
from app.sdk import TailedEvent, tail_events
from tests.conftest import free_port, wait_until

HOST_BEACONS_OFF = {"load": False, "cpu": False, "memory": False, "disk": False, "net": False}


def read_back(settings: Settings, subject: str) -> list[TailedEvent]:
    return list(tail_events(settings, from_beginning=True, subject=subject, stop_after_idle_s=3))


def test_run_once__events_reach_kafka_with_subject_and_tags(settings: Settings, tmp_path: Path) -> None:
    subject = f"host-{uuid.uuid4().hex[:8]}"
    watched = tmp_path / "motd"
    watched.write_text("hello\n")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = tmp_path / "beacons.yaml"
    config.write_text(textwrap.dedent(f"""\
        subject: {subject}
        tags: {{role: web, dc: ams1}}
        spool: {{dir: {tmp_path / "spool"}}}
        beacons:
          load: {{interval: 1m}}
          file: {{paths: ["{watched}"]}}
          tcp: {{checks: [{{name: svc, port: {port}}}]}}
          heartbeat: {{interval: 5s, ttl: 15s}}
    """))
    try:
        result = CliRunner().invoke(beacon_group, ["run", "-c", str(config), "--once"],
                                    obj=CliContext(_settings=settings))
    finally:
        listener.close()
    assert result.exit_code == 0, result.output
    assert "event(s) wait in the spool" not in result.output

    events = {(t.record["name"], t.record["kind"]): t.record for t in read_back(settings, subject)}
    assert {("beacon-runner", "STATUS"), ("load", "STATUS"), ("load", "METRIC"), (f"file:{watched}", "STATUS"),
            ("tcp:svc", "STATUS"), ("tcp:svc", "METRIC"), ("heartbeat", "STATUS")} <= set(events)
    heartbeat = events[("heartbeat", "STATUS")]
    assert heartbeat["ttl"] == 15.0 and heartbeat["tags"] == {"role": "web", "dc": "ams1"}
    assert events[("tcp:svc", "STATUS")]["tags"]["state"] == "up"
    assert events[(f"file:{watched}", "STATUS")]["origin"] == "beacon:file"


def test_changes_between_runs_reach_kafka(settings: Settings, tmp_path: Path) -> None:
    subject = f"host-{uuid.uuid4().hex[:8]}"
    watched = tmp_path / "managed.conf"
    watched.write_text("a = 1\n")
    config = BeaconsConfig.model_validate({
        "subject": subject, "spool": {"dir": str(tmp_path / "spool")},
        "beacons": {**HOST_BEACONS_OFF, "heartbeat": False, "file": {"paths": [str(watched)]}}})
    publisher = open_publisher(config, settings)
    runner = Runner(build_beacons(config), publisher, subject=subject)
    try:
        runner.run_once()
        watched.write_text("a = 2\n")
        runner.run_once()
        watched.unlink()
        runner.run_once()
    finally:
        publisher.close(timeout_s=30)
    assert publisher.left_in_spool == 0
    changes = [t.record["tags"]["change"] for t in read_back(settings, subject)]
    assert changes == ["baseline", "content", "removed"]


def test_spooled_while_unreachable_then_delivered_oldest_first(settings: Settings, tmp_path: Path) -> None:
    subject = f"host-{uuid.uuid4().hex[:8]}"
    config = load_beacons_config(None).model_copy(update={"subject": subject})
    config.spool.dir = tmp_path / "spool"
    config.spool.delivery_timeout_ms = 1000
    unreachable = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})

    offline = open_publisher(config, unreachable)
    for seq in range(5):
        offline.publish(Event(subject=subject, name="sample", kind="METRIC", metrics={"seq": float(seq)}))
    wait_until(lambda: offline.pending == 5, timeout_s=30,
               message="the 5 events to fail delivery and be spooled")
    offline.close(timeout_s=1)
    assert offline.left_in_spool == 5
    assert read_back(settings, subject) == []  # nothing got through

    online = open_publisher(config, settings)
    online.publish(Event(subject=subject, name="sample", kind="METRIC", metrics={"seq": 5.0}))
    wait_until(lambda: not online.spooling, timeout_s=60, message="the spool to be delivered")
    online.close(timeout_s=30)
    assert online.left_in_spool == 0

    tailed = read_back(settings, subject)
    samples = sorted((t for t in tailed if t.record["name"] == "sample"), key=lambda t: t.offset)
    assert [t.record["metrics"]["seq"] for t in samples] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # one key, one partition
    (report,) = [t.record for t in tailed if t.record["name"] == "beacon-runner"]
    assert (report["tags"]["change"], report["severity"]) == ("spool-drained", 0)
    assert (report["metrics"]["spooled"], report["metrics"]["delivered"], report["metrics"]["dropped"]) == (
        6.0, 6.0, 0.0)
