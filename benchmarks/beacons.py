"""Overhead of the beacon runner: every built-in at its default interval, for N seconds.

    .venv/bin/python benchmarks/beacons.py [--seconds 60] [--publisher null|kafka] [--bootstrap H:P --registry URL]
                                           [--json]

The runner runs in a child process; this process only measures it from outside with psutil, so
measuring costs the runner nothing. Every built-in is on, with something to watch: two files, a
process by name and one by pid file, a service (systemd unit, else its process), an HTTP URL and a
TCP port served by this process.

`--publisher kafka` (default) runs `vigil beacon run -c <config>` exactly as deployed, sending to a
real Kafka and schema registry: the ones given, else a throwaway local Kafka (KRaft, the dev
stack's jars) and registry started here for the run. `--publisher null` runs the same runner and
spooling publisher with a sink that acknowledges at once (no broker, no Kafka client loaded).

CPU is measured in steady state, from after a warm-up (imports, first run of every beacon) to the
end: (user + system CPU seconds of the child and its children) / wall seconds = % of one core.
RSS is sampled every second; the maximum is reported. The summary goes to stderr; with --json, as
the other benchmarks, the last stdout line is the result object:
{"cpu_pct_one_core": ..., "rss_mb": ..., "seconds": ..., ...}. Targets (issue 6): < 2 % of one
core and < 60 MB RSS; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

TARGET_CPU_PCT = 2.0
TARGET_RSS_MB = 60.0
WARMUP_S = 3.0

# `vigil beacon run` as deployed, whether or not app.cli lists the command yet.
_VIGIL = ("import sys\nfrom app.cli import LAZY_COMMANDS, main\n"
          "LAZY_COMMANDS.setdefault('beacon', 'app.beacons.cli:beacon_group')\nmain(sys.argv[1:])\n")


# -- the child for --publisher null (imports only what the runner does) -----------------------------------
class NullSink:
    """An EventSink whose far end acknowledges everything at once."""

    def __init__(self) -> None:
        self._pending: list[Any] = []

    def send(self, event: Any, on_done: Any) -> None:
        self._pending.append((event, on_done))

    def poll(self, timeout_s: float) -> None:
        pending, self._pending = self._pending, []
        for event, on_done in pending:
            on_done(event, None)

    flush = poll

    def reachable(self, timeout_s: float) -> bool:
        return True

    close = poll


def run_null_child(config_path: Path) -> None:
    """The runner of `vigil beacon run`, with a NullSink instead of Kafka, until SIGTERM."""
    from app.beacons.assembly import build_beacons, open_publisher
    from app.beacons.config import load_beacons_config
    from app.beacons.runner import Runner, StopSignal
    from app.config import load_settings

    config = load_beacons_config(config_path)
    publisher = open_publisher(config, load_settings(), sink=NullSink())
    runner = Runner(build_beacons(config), publisher, subject=config.subject, tags=config.tags)
    stop = StopSignal()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner.announce()
    runner.run(stop)
    runner.close()
    publisher.close(timeout_s=10)
    print(f"stopped {len(runner.beacons)} beacon(s): {runner.events_published} event(s) published",
          file=sys.stderr)


# -- the parent: things to watch, a stack if needed, the measurement ----------------------------------------
def write_config(workdir: Path, http_port: int, pidfile: Path) -> Path:
    """Every built-in on, at its default interval, each with something to watch."""
    import yaml

    for name in ("motd", "app.conf"):
        (workdir / name).write_text(f"{name}\n" * 100)
    config = {
        "subject": "bench-host",
        "tags": {"role": "bench"},
        "spool": {"dir": str(workdir / "spool")},
        "beacons": {
            "file": {"paths": [str(workdir / "motd"), str(workdir / "app.conf")]},
            "process": {"processes": [{"name": "python", "match": Path(sys.executable).name},
                                      {"name": "sleeper", "pidfile": str(pidfile)}]},
            "service": {"services": ["cron"]},
            "http": {"checks": [{"name": "local", "url": f"http://127.0.0.1:{http_port}/health"}]},
            "tcp": {"checks": [{"name": "local", "port": http_port}]},
        },
    }
    path = workdir / "beacons.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def throwaway_stack() -> Any:
    """Context manager: a local Kafka and schema registry on free ports, topics of topics.yaml."""
    import socket
    import tempfile
    from contextlib import contextmanager

    from app.bus.clients import make_admin, wait_for_kafka
    from app.config import load_settings
    from app.devstack.kafka import LocalKafka, ensure_kafka_jars
    from app.registry.server import start_registry_in_thread
    from app.topics.admin import reconcile
    from app.topics.spec import load_topics_file

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @contextmanager
    def stack() -> Any:
        repo = Path(__file__).resolve().parents[1]
        with tempfile.TemporaryDirectory(prefix="vigil-bench-kafka-") as tmp:
            home = Path(tmp)
            (home / "kafka").mkdir()
            (home / "kafka" / "libs").symlink_to(ensure_kafka_jars(repo / ".vigil" / "kafka" / "libs").resolve())
            node = LocalKafka(home, port=free_port(), controller_port=free_port(), heap="-Xms256m -Xmx1g")
            node.start()
            try:
                settings = load_settings(kafka_bootstrap=node.bootstrap, home=home)
                wait_for_kafka(settings, timeout_s=90)
                reconcile(make_admin(settings), load_topics_file(repo / "topics.yaml").topics, dry_run=False)
                registry = _start_registry(settings, start_registry_in_thread, free_port)
                try:
                    yield node.bootstrap, registry.url
                finally:
                    registry.stop()
            finally:
                node.stop()

    return stack()


def _start_registry(settings: Any, start: Any, free_port: Any, attempts: int = 5) -> Any:
    # A fresh broker may answer NOT_LEADER for the registry's new topic for a moment.
    for attempt in range(attempts):
        try:
            return start(settings, port=free_port())
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            print(f"registry did not start ({exc}); retrying", file=sys.stderr)
    raise AssertionError("unreachable")


def measure(seconds: float, publisher: str, env: dict[str, str]) -> dict[str, Any]:
    """Start the child, let it warm up, measure `seconds` of steady state, stop it."""
    import re
    import subprocess
    import tempfile
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import psutil

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeper = subprocess.Popen(["sleep", str(int(seconds + WARMUP_S + 120))])
    with tempfile.TemporaryDirectory(prefix="vigil-bench-beacons-") as tmp:
        workdir = Path(tmp)
        (workdir / "sleeper.pid").write_text(str(sleeper.pid))
        config = write_config(workdir, server.server_address[1], workdir / "sleeper.pid")
        argv = ([sys.executable, "-c", _VIGIL, "beacon", "run", "-c", str(config), "--log-level", "WARNING"]
                if publisher == "kafka" else [sys.executable, __file__, "--null-child", str(config)])
        child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        proc = psutil.Process(child.pid)
        try:
            time.sleep(WARMUP_S)  # imports and the first run of every beacon are not steady state
            startup_cpu_s = _cpu_s(proc)
            t0, rss_max = time.monotonic(), 0
            while (left := seconds - (time.monotonic() - t0)) > 0:
                rss_max = max(rss_max, proc.memory_info().rss)
                time.sleep(min(1.0, left))
            cpu_s, wall_s = _cpu_s(proc) - startup_cpu_s, time.monotonic() - t0
            rss = proc.memory_info().rss
            rss_max, uss = max(rss_max, rss), proc.memory_full_info().uss
        finally:
            child.send_signal(signal.SIGTERM)
            _, stderr = child.communicate(timeout=60)
            sleeper.kill()
            sleeper.wait()
            server.shutdown()
    published = re.search(r"(\d+) event\(s\) published", stderr)
    return {
        "cpu_pct_one_core": round(100.0 * cpu_s / wall_s, 3),
        "rss_mb": round(rss_max / 2**20, 1),
        "seconds": round(wall_s, 1),
        "rss_mb_at_end": round(rss / 2**20, 1),
        "uss_mb_at_end": round(uss / 2**20, 1),
        "startup_cpu_s": round(startup_cpu_s, 2),
        "publisher": publisher,
        "events": int(published.group(1)) if published else None,
        "child_exit_code": child.returncode,
        "child_summary": stderr.strip().splitlines()[-1] if stderr.strip() else "",
        "targets": {"cpu_pct_one_core": TARGET_CPU_PCT, "rss_mb": TARGET_RSS_MB},
    }


def _cpu_s(proc: Any) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --null-child, the runner under test)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-state measurement (default 60)")
    parser.add_argument("--publisher", choices=["kafka", "null"], default="kafka")
    parser.add_argument("--bootstrap", help="Kafka HOST:PORT (default: start a throwaway one)")
    parser.add_argument("--registry", help="schema registry URL (with --bootstrap)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line last (stdout)")
    parser.add_argument("--null-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.null_child:
        run_null_child(args.null_child)
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    if args.publisher == "kafka" and not args.bootstrap:
        with throwaway_stack() as (bootstrap, registry):
            env.update(VIGIL_KAFKA_BOOTSTRAP=bootstrap, VIGIL_SCHEMA_REGISTRY_URL=registry)
            result = measure(args.seconds, args.publisher, env)
    else:
        if args.bootstrap:
            env["VIGIL_KAFKA_BOOTSTRAP"] = args.bootstrap
        if args.registry:
            env["VIGIL_SCHEMA_REGISTRY_URL"] = args.registry
        result = measure(args.seconds, args.publisher, env)
    ok = result["cpu_pct_one_core"] < TARGET_CPU_PCT and result["rss_mb"] < TARGET_RSS_MB
    print(f"beacon runner, every built-in at default intervals, {result['seconds']}s steady state "
          f"({args.publisher} publisher, {result['events']} events): CPU {result['cpu_pct_one_core']}% of one "
          f"core, RSS max {result['rss_mb']} MB -> {'within' if ok else 'OVER'} targets "
          f"(<{TARGET_CPU_PCT}%, <{TARGET_RSS_MB:.0f} MB)", file=sys.stderr)
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
