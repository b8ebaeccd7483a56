"""`vigil beacon run|list` without a broker: Kafka and the registry unreachable, so events must end
up in the spool; SIGTERM stops a running runner cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.beacons.cli import beacon_group
from app.beacons.spool import Spool
from app.cli import CliContext
from tests.conftest import REPO, free_port, wait_until


@pytest.fixture
def unreachable() -> CliContext:
    """CLI context whose Kafka and registry are ports nobody listens on."""
    port = free_port()
    return CliContext({"kafka_bootstrap": f"127.0.0.1:{port}", "schema_registry_url": f"http://127.0.0.1:{port}"})


def config_file(tmp_path: Path, extra: str = "") -> Path:
    watched = tmp_path / "motd"
    watched.write_text("hi\n")
    path = tmp_path / "beacons.yaml"
    path.write_text(textwrap.dedent(f"""\
        subject: web1
        tags: {{role: web}}
        spool: {{dir: {tmp_path / "spool"}, delivery_timeout: 1s}}
        beacons:
          load: false
          cpu: false
          memory: false
          disk: false
          net: false
          file: {{paths: [{watched}]}}
    """) + extra)
    return path


def spooled(tmp_path: Path) -> list[tuple[str, str]]:
    spool = Spool(tmp_path / "spool", max_events=100, max_bytes=10**6)
    try:
        return [(e.subject, e.name) for _, e in spool.peek(100)]
    finally:
        spool.close()


def test_list__shows_beacons_and_validates(tmp_path: Path) -> None:
    result = CliRunner().invoke(beacon_group, ["list", "-c", str(config_file(tmp_path))], obj=CliContext())
    assert result.exit_code == 0, result.output
    assert "subject web1" in result.output
    assert [line.split()[0] for line in result.output.splitlines()[1:]] == ["file", "heartbeat"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("beacons:\n  disk: {interval: never}\n")
    result = CliRunner().invoke(beacon_group, ["list", "--config", str(bad)], obj=CliContext())
    assert result.exit_code == 1 and "bad.yaml:2: beacons.disk.interval: 'never' is not a duration" in result.output


def test_run_once__kafka_unreachable_events_wait_in_the_spool(tmp_path: Path, unreachable: CliContext) -> None:
    result = CliRunner().invoke(beacon_group, ["run", "-c", str(config_file(tmp_path)), "--once"], obj=unreachable)
    assert result.exit_code == 0, result.output
    assert "ran 2 beacon(s) as web1: 3 event(s) published; 3 event(s) wait in the spool" in result.output
    assert spooled(tmp_path) == [("web1", "beacon-runner"), ("web1", f"file:{tmp_path / 'motd'}"),
                                 ("web1", "heartbeat")]


def test_run_once__plugins_from_the_command_line(tmp_path: Path, unreachable: CliContext) -> None:
    plugin = tmp_path / "cli_plugin_beacons.py"
    plugin.write_text("from app.beacons import beacon\n\n@beacon(interval='5s')\n"
                      "def cli_plugin_probe():\n    return {'text': 'hello'}\n")
    try:
        result = CliRunner().invoke(beacon_group, ["run", "-c", str(config_file(tmp_path)), "--once",
                                                   "--plugins", str(plugin)], obj=unreachable)
        assert result.exit_code == 0, result.output
        assert ("web1", "cli_plugin_probe") in spooled(tmp_path)
    finally:
        from app.beacons.registry import unregister

        unregister("cli_plugin_probe")


def test_run__a_broken_plugin_is_an_error_not_a_crash(tmp_path: Path, unreachable: CliContext) -> None:
    result = CliRunner().invoke(beacon_group, ["run", "-c", str(config_file(tmp_path)), "--once",
                                               "--plugins", "no_such_beacon_plugin"], obj=unreachable)
    assert result.exit_code == 1
    assert "plugin no_such_beacon_plugin: cannot import it" in result.output


_MAIN = ("import sys\nfrom app.cli import LAZY_COMMANDS, main\n"
         "LAZY_COMMANDS.setdefault('beacon', 'app.beacons.cli:beacon_group')\nmain(sys.argv[1:])\n")


def test_run__sigterm_stops_cleanly_and_keeps_the_spool(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "runner.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", _MAIN, "--bootstrap", f"127.0.0.1:{port}",
                                 "--registry", f"http://127.0.0.1:{port}", "beacon", "run",
                                 "-c", str(config_file(tmp_path))], cwd=REPO, stderr=err,
                                stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: "keeping them in" in log.read_text(), timeout_s=30, message="the runner to spool")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = re.search(r"stopped 2 beacon\(s\) as web1: (\d+) event\(s\) published; (\d+) event\(s\) wait",
                        log.read_text())
    assert summary and summary.group(1) == summary.group(2), log.read_text()  # all of them kept
    names = [name for _, name in spooled(tmp_path)]
    assert len(names) == int(summary.group(1)) and names[0] == "beacon-runner"


@pytest.fixture
def http_ok() -> Iterator[str]:
    """A local HTTP server answering 200 to GET /health."""

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("level", "library_lines"), [("INFO", False), ("DEBUG", True)])
def test_run__library_request_logs_only_at_debug(tmp_path: Path, http_ok: str, level: str,
                                                 library_lines: bool) -> None:
    port = free_port()
    config = config_file(tmp_path, f"  http: {{checks: [{{name: local, url: '{http_ok}'}}]}}\n")
    proc = subprocess.run([sys.executable, "-c", _MAIN, "--bootstrap", f"127.0.0.1:{port}",
                           "--registry", f"http://127.0.0.1:{port}", "beacon", "run", "-c", str(config), "--once",
                           "--log-level", level], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ran 3 beacon(s) as web1" in proc.stderr  # the http check ran
    assert (f"HTTP Request: GET {http_ok}" in proc.stderr) == library_lines, proc.stderr
