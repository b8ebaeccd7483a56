"""The newcomer's commands end to end on the real Kafka: emit/tail, custom types, schemas, topics,
and the local dev stack lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.config import Settings
from app.registry.schemas_cli import EXIT_REFUSED
from app.sdk import EmitError, tail_events
from app.topics.spec import load_topics_file
from tests.conftest import REPO, free_port, wait_until
from tests.kafka_clients import open_clients

CUSTOM_AVSC = {
    "type": "record", "name": "DiskRepair", "namespace": "acme.ops",
    "fields": [{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},
               {"name": "time", "type": "long"}, {"name": "disk", "type": "string"},
               {"name": "bytes_freed", "type": "long", "default": 0}]}


def vigil(settings: Settings, *args: str, env: dict[str, str] | None = None,
          timeout_s: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "VIGIL_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
                "VIGIL_TOPIC_PREFIX": settings.topic_prefix, **(env or {})}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout_s)


def tailed(settings: Settings, subject: str) -> list:
    return list(tail_events(settings, from_beginning=True, subject=subject, stop_after_idle_s=1.5))


def test_emit_then_tail__builtin_event_round_trips(isolated_settings: Settings) -> None:
    s = isolated_settings
    out = vigil(s, "emit", "web1", "load", "--kind", "metric", "--severity", "1", "--metric", "load1=3.5",
                "--tag", "class=client", "--text", "busy", "--ttl", "30")
    assert out.returncode == 0, out.stderr
    event_id = out.stdout.strip()
    (ev,) = tailed(s, "web1")
    assert ev.type == "vigil.Event"
    r = ev.record
    assert (r["id"], r["subject"], r["name"], r["kind"], r["severity"]) == (event_id, "web1", "load", "METRIC", 1)
    assert (r["metrics"], r["tags"], r["text"], r["ttl"]) == ({"load1": 3.5}, {"class": "client"}, "busy", 30.0)


def test_tail__a_missing_topic_is_an_error_and_leaves_no_consumer_open(settings: Settings) -> None:
    s = settings.model_copy(update={"topic_prefix": "no-such-prefix-"})
    before = {id(client) for client in open_clients()}  # the session registry's, for one
    with pytest.raises(EmitError, match="topic no-such-prefix-events does not exist"):
        next(tail_events(s))
    assert [client for client in open_clients() if id(client) not in before] == []


def test_events_tail_cli__prints_json_lines_as_events_arrive(isolated_settings: Settings) -> None:
    s = isolated_settings
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "VIGIL_SCHEMA_REGISTRY_URL": s.schema_registry_url,
           "VIGIL_TOPIC_PREFIX": s.topic_prefix}
    proc = subprocess.Popen([sys.executable, "-m", "app", "events", "tail", "--json", "--from-beginning",
                             "--subject", "tail-*"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: [lines.append(json.loads(line)) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        assert vigil(s, "emit", "other", "x").returncode == 0
        emitted = vigil(s, "emit", "tail-host", "disk", "--severity", "2").stdout.strip()
        wait_until(lambda: lines, timeout_s=30, message="a line from vigil events tail")
    finally:
        proc.terminate()
        proc.wait(10)
    assert [(line["id"], line["subject"], line["severity"], line["type"]) for line in lines] == [
        (emitted, "tail-host", 2, "vigil.Event")]
    assert isinstance(lines[0]["time"], int)  # JSON keeps the epoch milliseconds; people get ISO-8601


def test_custom_type__registered_emitted_and_tailed_without_code_changes(isolated_settings: Settings,
                                                                         tmp_path: Path) -> None:
    s = isolated_settings
    avsc = tmp_path / "acme" / "ops" / "DiskRepair.avsc"
    avsc.parent.mkdir(parents=True)
    avsc.write_text(json.dumps(CUSTOM_AVSC))
    reg = vigil(s, "schemas", "register", str(avsc))
    assert reg.returncode == 0, reg.stderr
    assert "acme.ops.DiskRepair" in vigil(s, "schemas", "list").stdout
    data = '{"disk": "sdb", "bytes_freed": 7}'
    out = vigil(s, "emit", "db1", "repair", "--type", "acme.ops.DiskRepair", "--data", data)
    assert out.returncode == 0, out.stderr
    (ev,) = tailed(s, "db1")
    assert ev.type == "acme.ops.DiskRepair"
    assert {k: ev.record[k] for k in ("subject", "name", "disk", "bytes_freed")} == {
        "subject": "db1", "name": "repair", "disk": "sdb", "bytes_freed": 7}


def test_schemas__incompatible_change_refused_with_reason(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings
    name = f"Thing{os.getpid()}{free_port()}"
    v1 = {"type": "record", "name": name, "namespace": "acme.compat",
          "fields": [{"name": "subject", "type": "string"}, {"name": "name", "type": "string"},
                     {"name": "time", "type": "long"}]}
    path = tmp_path / f"{name}.avsc"
    path.write_text(json.dumps(v1))
    assert vigil(s, "schemas", "register", str(path)).returncode == 0
    v2 = {**v1, "fields": [*v1["fields"], {"name": "owner", "type": "string"}]}  # no default: not BACKWARD
    path.write_text(json.dumps(v2))
    check = vigil(s, "schemas", "check", str(path))
    assert check.returncode == 1 and "INCOMPATIBLE" in check.stderr and "owner" in check.stderr
    refused = vigil(s, "schemas", "register", str(path))
    assert refused.returncode == EXIT_REFUSED and "REFUSED" in refused.stderr and "owner" in refused.stderr
    v3 = {**v1, "fields": [*v1["fields"], {"name": "owner", "type": "string", "default": ""}]}
    path.write_text(json.dumps(v3))
    assert vigil(s, "schemas", "check", str(path)).returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["emit", "h", "n", "--metric", "load=abc"], "'abc' is not a number"),
    (["emit", "h", "n", "--metric", "load"], "expected NAME=VALUE"),
    (["emit", "h", "n", "--metric", "load=nan"], "finite"),
    (["emit", "h", "n", "--kind", "gauge"], "'gauge' is not one of"),
    (["emit", "h", "n", "--severity", "7"], "7 is not in the range"),
    (["emit", "h", "n", "--type", "vigil.Event", "--data", "{not json"], "not JSON"),
    (["emit", "h", "n", "--type", "vigil.Event", "--data", '{"severity": "high"}'], "vigil.Event"),
    (["emit", "h", "n", "--type", "acme.Nope", "--data", "{}"], "is not registered"),
])
def test_emit__invalid_input_exits_nonzero_with_one_line_and_produces_nothing(isolated_settings: Settings, args,
                                                                              message: str) -> None:
    out = vigil(isolated_settings, *args)
    assert out.returncode != 0
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr
    assert tailed(isolated_settings, "h") == []


def test_topics_apply__second_run_is_a_no_op(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings.model_copy(update={"topic_prefix": f"{isolated_settings.topic_prefix}x-"})
    first = vigil(s, "topics", "apply")
    assert first.returncode == 0 and f"created {s.topic('events')}\n" in first.stdout
    again = vigil(s, "topics", "apply")
    assert again.returncode == 0 and again.stdout.strip() == "topics are up to date"
    grown = tmp_path / "topics.yaml"
    declared = (REPO / "topics.yaml").read_text()
    grown.write_text(declared.replace("defaults:\n  partitions: 6", "defaults:\n  partitions: 8"))
    diff = vigil(s, "topics", "diff", str(grown))
    assert "add-partitions" in diff.stdout and f"{s.topic('alerts')}: 6 -> 8" in diff.stdout
    assert f"refuse          {s.topic('events')}: 6 -> 8 partitions refused" in diff.stdout
    # Stateful topics (agents keep state by their partitions) are not grown without the say-so...
    refused = vigil(s, "topics", "apply", str(grown))
    assert refused.returncode != 0 and f"--allow-repartition {s.topic('events')}" in refused.stderr, refused.stderr
    assert f"grew {s.topic('alerts')} to 8 partitions" in refused.stdout  # ...the rest is applied
    stateful = [t.name for t in load_topics_file(grown).topics if t.stateful]
    assert {"events", "status", "actions", "rules-repartition"} <= set(stateful)
    allowed = vigil(s, "topics", "apply", str(grown), *[arg for t in stateful for arg in ("--allow-repartition", t)])
    assert allowed.returncode == 0 and f"grew {s.topic('events')} to 8 partitions" in allowed.stdout
    assert vigil(s, "topics", "apply", str(grown)).stdout.strip() == "topics are up to date"


@pytest.mark.timeout(240)
def test_dev_stack__up_status_down_keeps_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to((REPO / ".vigil" / "kafka" / "libs").resolve())
    env = {**os.environ, "VIGIL_HOME": str(home), "VIGIL_DEV_KAFKA_PORT": str(free_port()),
           "VIGIL_DEV_CONTROLLER_PORT": str(free_port()), "VIGIL_DEV_REGISTRY_PORT": str(free_port())}
    for key in ("VIGIL_KAFKA_BOOTSTRAP", "VIGIL_SCHEMA_REGISTRY_URL", "VIGIL_TOPIC_PREFIX"):
        env.pop(key, None)

    def dev(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", "dev", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=180)

    try:
        up = dev("up")
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{env['VIGIL_DEV_KAFKA_PORT']}" in up.stdout
        assert f"http://127.0.0.1:{env['VIGIL_DEV_REGISTRY_PORT']}" in up.stdout
        assert "schemas: vigil.Event -> id" in up.stderr
        ids_first = sorted(line for line in up.stderr.splitlines() if line.startswith("schemas:"))
        assert dev("status").returncode == 0
        dev("down")
        down_status = dev("status")
        assert down_status.returncode == 1 and "NOT ANSWERING" in down_status.stdout
        again = dev("up")
        assert again.returncode == 0, again.stderr
        assert "topics: created" not in again.stderr  # topics survived
        assert sorted(line for line in again.stderr.splitlines() if line.startswith("schemas:")) == ids_first
    finally:
        dev("down")
