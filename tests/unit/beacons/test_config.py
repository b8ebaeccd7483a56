"""beacons.yaml: defaults, shorthands, and errors that name file, line and field."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from app.beacons.config import BeaconConfigError, BeaconsConfig, load_beacons_config, parse_byte_size
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "beacons.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(BeaconConfigError) as err:
        load_beacons_config(write(tmp_path, text))
    return str(err.value)


def test_defaults__host_beacons_on_subject_is_the_host_name() -> None:
    config = load_beacons_config(None)
    assert config.subject == socket.gethostname()
    b = config.beacons
    assert (b.load.interval_ms, b.disk.interval_ms, b.heartbeat.interval_ms, b.heartbeat.ttl_s) == (
        30_000, 60_000, 10_000, 30.0)
    assert b.disk.mounts == ["/"] and b.disk.thresholds.warning == 85
    assert (config.spool.max_events, config.spool.max_bytes, config.spool.delivery_timeout_ms) == (
        100_000, 64 * 2**20, 30_000)


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_beacons_config(write(tmp_path, "")) == BeaconsConfig()


def test_full_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-7")
    config = load_beacons_config(write(tmp_path, """\
        subject: ${env:NODE_NAME}
        tags: {role: web, dc: 1, canary: true}
        plugins: mybeacons
        spool: {dir: /var/spool/vigil, max_events: 500, max_bytes: 10MiB, delivery_timeout: 5s}
        beacons:
          load: false
          cpu:
          disk:
            interval: 5m
            mounts: all
            thresholds: {warning: 70}
          file:
            paths: [/etc/motd, {path: /etc/hosts, managed: false}]
          process:
            processes: [nginx, {name: kafka, cmdline: kafka.Kafka}, {name: w, pidfile: /run/w.pid}]
          service: {services: [sshd]}
          http: {checks: [{url: "http://127.0.0.1:8081/subjects", latency: {warning: 200}}]}
          tcp: {checks: ["127.0.0.1:9092", 8081]}
          heartbeat: {interval: 5s, ttl: 20s}
          custom: {queue_depth: {interval: 1m}}
    """))
    assert config.subject == "node-7"
    assert config.tags == {"role": "web", "dc": "1", "canary": "true"}
    assert config.plugins == ["mybeacons"]
    assert (config.spool.dir, config.spool.max_bytes, config.spool.delivery_timeout_ms) == (
        Path("/var/spool/vigil"), 10 * 2**20, 5000)
    b = config.beacons
    assert not b.load.enabled and b.cpu.enabled
    assert b.disk.interval_ms == 300_000 and b.disk.mounts == ["all"]
    assert (b.disk.thresholds.warning, b.disk.thresholds.critical) == (70, 95)  # unset levels keep defaults
    assert [(f.path, f.managed) for f in b.file.paths] == [(Path("/etc/motd"), None), (Path("/etc/hosts"), False)]
    assert [p.name for p in b.process.processes] == ["nginx", "kafka", "w"]
    assert b.service.services[0].unit_name == "sshd.service"
    assert b.http.checks[0].latency_ms.warning == 200 and b.http.checks[0].label == "http://127.0.0.1:8081/subjects"
    assert [(c.host, c.port) for c in b.tcp.checks] == [("127.0.0.1", 9092), ("127.0.0.1", 8081)]
    assert b.heartbeat.ttl_s == 20.0
    assert b.custom["queue_depth"].interval_ms == 60_000


@pytest.mark.parametrize(("text", "expected"), [
    ("beacons:\n  disk:\n    thresholds:\n      warning: lots\n",
     "beacons.yaml:4: beacons.disk.thresholds.warning: Input should be a valid number"),
    ("beacons:\n  load:\n    interval: soon\n",
     "beacons.yaml:3: beacons.load.interval: 'soon' is not a duration"),
    ("beacons:\n  lod: {}\n",
     "beacons.yaml:2: beacons.lod: unknown setting (built-in beacons: load, cpu"),
    ("beacons:\n  cpu:\n    thresholds: {warning: 99, critical: 90}\n",
     "beacons.yaml:3: beacons.cpu.thresholds: warning (99) must not be above critical (90)"),
    ("beacons:\n  tcp:\n    checks:\n      - localhost\n",
     "beacons.yaml:4: beacons.tcp.checks.0: 'localhost': expected HOST:PORT"),
    ("beacons:\n  disk: {mounts: [data]}\n",
     "beacons.yaml:2: beacons.disk.mounts: 'data': a mount point is an absolute path"),
    ("beacons:\n  process:\n    processes:\n      - {name: x, pidfile: /run/x.pid, match: x}\n",
     "beacons.yaml:4: beacons.process.processes.0: give either pidfile or match/cmdline"),
    ("beacons:\n  http:\n    checks:\n      - {url: 'http://a/'}\n      - {url: 'http://a/'}\n",
     "beacons.yaml:2: beacons.http: two http checks named 'http://a/': give one a distinct `name`"),
    ("spool:\n  max_bytes: plenty\n", "beacons.yaml:2: spool.max_bytes: 'plenty' is not a size"),
    ("subject: ${env:VIGIL_NO_SUCH_VAR}\n",
     "beacons.yaml:1: subject: ${env:VIGIL_NO_SUCH_VAR}: environment variable VIGIL_NO_SUCH_VAR is not set"),
    ("- a\n- b\n", "beacons.yaml:1: the top level must be a mapping"),
    ("beacons: {load: [\n", "beacons.yaml:2: not valid YAML"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, text)


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    message = load_error(tmp_path, "tags: {a: [1]}\nbeacons:\n  heartbeat: {interval: 0s}\n")
    assert len(message.splitlines()) == 2
    assert "beacons.yaml:1: tags.a" in message and "beacons.yaml:3: beacons.heartbeat.interval" in message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BeaconConfigError, match=r"cannot read beacons config .*nope\.yaml"):
        load_beacons_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "size"), [
    ("1048576", 1048576), ("64MB", 64_000_000), ("64MiB", 64 * 2**20), ("500k", 500_000), ("1 GiB", 2**30),
])
def test_parse_byte_size(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


def test_the_repo_example_is_valid() -> None:
    config = load_beacons_config(REPO / "beacons.yaml")
    assert config.beacons.heartbeat.ttl_s == 30.0 and config.beacons.file.paths
