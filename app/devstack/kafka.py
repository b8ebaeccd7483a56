"""A local single-node Apache Kafka in KRaft mode: a real broker JVM, data under the Vigil home dir.

The jars come from Maven Central through app/devstack/pom.xml. The process is detached and
tracked with a pid file so `vigil dev down` in another shell can stop it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DevStackError", "LocalKafka", "ensure_kafka_jars", "free_port", "pid_alive", "running_pid",
           "start_private_kafka", "stop_pid", "tail_file"]

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("pom.xml")


class DevStackError(Exception):
    """The local stack cannot start; the message says what to install or fix."""


def ensure_kafka_jars(libs_dir: Path) -> Path:
    """Resolve the Kafka jars with Maven into libs_dir unless already there; return libs_dir."""
    stamp = libs_dir / ".installed"
    if stamp.exists():
        return libs_dir
    if shutil.which("mvn") is None:
        raise DevStackError("Maven is needed to fetch the Kafka jars: install it (apt-get install maven)")
    libs_dir.mkdir(parents=True, exist_ok=True)
    log.info("fetching Kafka jars with Maven into %s", libs_dir)
    proc = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs_dir.resolve()}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise DevStackError(f"Maven could not fetch the Kafka jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    stamp.touch()
    return libs_dir


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def tail_file(path: Path, lines: int = 30) -> str:
    """Last lines of a log file ('' if it cannot be read), for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def running_pid(pid_file: Path) -> int | None:
    """The pid in a pid file if that process is alive (None if the file is missing or stale)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM a process group leader and wait; SIGKILL it if it does not exit in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.1)


@dataclass
class LocalKafka:
    """One KRaft node (broker + controller) rooted at `home`."""

    home: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "-Xms256m -Xmx1g"
    #: JVM flags besides the heap. C1 only (TieredStopAtLevel=1): a fresh broker's C2 compiler
    #: otherwise takes ~40% of a core for its first minutes, which on a small dev machine starves the
    #: workers next to it (2 cores: event-to-alert p99 372-1,187 ms with C2, 144 ms without); this
    #: broker's own peak speed matters less than a quiet machine.
    jvm_opts: str = "-XX:+UseG1GC -XX:TieredStopAtLevel=1"
    host: str = "127.0.0.1"

    @property
    def libs_dir(self) -> Path:
        return self.home / "kafka" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data" / "kafka"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def server_properties(self) -> str:
        """Broker config for one node; single-replica internal topics so transactions work."""
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
            f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir.resolve()}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "min.insync.replicas=1",
            "default.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=1000",
            "transaction.max.timeout.ms=900000",
            "",
        ])

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise DevStackError(
                "Java 17+ is needed for the local Kafka: install it (apt-get install openjdk-17-jre-headless)")
        return java

    def _classpath(self) -> str:
        ensure_kafka_jars(self.libs_dir)
        return f"{self.libs_dir.resolve()}/*"

    def _write_config(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.run_dir / "server.properties"
        cfg.write_text(self.server_properties())
        log4j = self.run_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=WARN\n"
            "log4j.logger.kafka.log.LogCleaner=WARN\nlog4j.logger.state.change.logger=WARN\n"
        )
        return cfg

    def format_storage(self) -> None:
        """Format the KRaft log dir once; the cluster id is kept with the data."""
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self._write_config()
        cluster_id_file = self.home / "data" / "cluster-id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(_kafka_cluster_id())
        proc = subprocess.run(
            [self._java(), "-cp", self._classpath(),
             f"-Dlog4j.configuration=file:{self.run_dir.resolve()}/log4j.properties",
             "kafka.tools.StorageTool", "format", "-t", cluster_id_file.read_text().strip(), "-c", str(cfg)],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise DevStackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def running_pid(self) -> int | None:
        """Pid of our broker if its pid file points at a live process."""
        return running_pid(self.pid_file)

    def start(self) -> int:
        """Start the broker in the background (no-op if already running); return its pid."""
        pid = self.running_pid()
        if pid:
            return pid
        java = self._java()
        classpath = self._classpath()
        self.format_storage()
        cfg = self._write_config()
        cmd = [java, *self.heap.split(), *self.jvm_opts.split(), "-Djava.awt.headless=true",
               f"-Dlog4j.configuration=file:{self.run_dir.resolve()}/log4j.properties",
               f"-Dkafka.logs.dir={self.run_dir.resolve()}",
               "-cp", classpath, "kafka.Kafka", str(cfg)]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self) -> bool:
        """Stop the broker (clean shutdown, data kept). Returns False if it was not running."""
        pid = self.running_pid()
        if not pid:
            return False
        stop_pid(pid, timeout_s=60.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail_log(self, lines: int = 30) -> str:
        """Last lines of the broker log, for error messages."""
        return tail_file(self.log_file, lines)


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool makes)."""
    import base64

    while True:  # a leading "-" would be read as an option by StorageTool
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port() -> int:
    """An ephemeral TCP port on loopback that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private_kafka(home: Path, *, libs_dir: Path, heap: str = "-Xms256m -Xmx1g",
                        timeout_s: float = 90.0) -> LocalKafka:
    """A throwaway broker (tests, benchmarks): jars shared from `libs_dir`, data under `home`, free
    ports; returns once it answers (stopped again, with its log in the error, if it does not)."""
    from app.bus.clients import wait_for_kafka
    from app.config import load_settings

    libs = ensure_kafka_jars(libs_dir)
    (home / "kafka").mkdir(parents=True, exist_ok=True)
    link = home / "kafka" / "libs"
    if not link.exists():
        link.symlink_to(libs.resolve())
    node = LocalKafka(home, port=free_port(), controller_port=free_port(), heap=heap)
    node.start()
    try:
        wait_for_kafka(load_settings(kafka_bootstrap=node.bootstrap), timeout_s=timeout_s)
    except Exception as exc:
        log_tail = node.tail_log(60)
        node.stop()
        raise DevStackError(f"private Kafka did not start: {exc}\n{log_tail}") from exc
    return node
