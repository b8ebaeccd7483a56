"""Real metric receivers on loopback for the sinks' tests: Prometheus (remote-write receiver and
scraper), carbon-cache (Graphite plaintext, stored in whisper files) and an OpenTelemetry Collector
(OTLP/HTTP receiver, file exporter).

`make receivers` (a prerequisite of `make test`) installs them under .vigil/: Prometheus and the
collector (tools/otelcol) built with Go, carbon in a virtualenv of its own. Each `start_*` context
manager runs one as a subprocess on free loopback ports, waits until it answers (with a deadline)
and stops it at the end. A receiver that could not be installed makes its fixture skip with the
command that failed and its error (read from the install log).

The fixtures are session-scoped: a test tells its data apart by a metric name or label of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import whisper
import yaml

from tests.conftest import REPO, free_port

__all__ = ["CARBON_VENV", "OTELCOL", "PROMETHEUS", "GraphiteReceiver", "OtlpReceiver", "PrometheusReceiver",
           "ReceiverFailed", "Scrape", "flatten_otlp_metrics", "require_installed", "start_carbon", "start_otelcol",
           "start_prometheus"]

PROMETHEUS = REPO / ".vigil" / "bin" / "prometheus"
OTELCOL = REPO / ".vigil" / "bin" / "vigil-otelcol"
CARBON_VENV = REPO / ".vigil" / "carbon-venv"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ReceiverFailed(RuntimeError):
    """A receiver process exited or did not answer in time; the message carries its log's tail."""


def require_installed(path: Path, make_target: str) -> None:
    """Skip the test when `path` (installed by `make <make_target>`) is missing, saying why: the
    install command and its error, from .vigil/<make_target>-install.log."""
    if path.exists() and os.access(path, os.X_OK):
        return
    log = REPO / ".vigil" / f"{make_target}-install.log"
    reason = f"{path} is missing: `make {make_target}` installs it"
    if log.is_file():
        reason += f"; its last install attempt, {log}:\n{log.read_text(errors='replace').strip()[-3000:]}"
    pytest.skip(reason)


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.is_file() else "(no log)"


@contextmanager
def _daemon(argv: list[str], *, log_path: Path, ready: Callable[[], bool], what: str,
            timeout_s: float = START_TIMEOUT_S) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own process group, logging to `log_path`; return once `ready()` is true.
    At the end: SIGTERM to the group, SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise ReceiverFailed(f"{what} exited with {proc.returncode}: {' '.join(argv)}\n"
                                     f"{log_path}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ReceiverFailed(f"{what} did not answer within {timeout_s}s: {' '.join(argv)}\n"
                                     f"{log_path}:\n{_log_tail(log_path)}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- Prometheus ---------------------------------------------------------------------------------


@dataclass
class PrometheusReceiver:
    """A running Prometheus: remote-write receiver at `remote_write_url`, HTTP API at `url`."""

    url: str
    config_path: Path
    http: httpx.Client
    remote_write: tuple[str, ...] = ()
    _scrapes: dict[str, Scrape] = field(default_factory=dict)  # by job name
    _next_job: int = 0

    @property
    def remote_write_url(self) -> str:
        """Where a remote-write sender POSTs (snappy-compressed protobuf WriteRequest)."""
        return f"{self.url}/api/v1/write"

    def _api(self, path: str, params: dict[str, str]) -> Any:
        response = self.http.get(f"{self.url}{path}", params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params} answered {response.status_code}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result list of an instant query at now (each: {"metric": {labels}, "value": [t, "v"]})."""
        data = self._api("/api/v1/query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, match: str) -> list[dict[str, Any]]:
        """The label sets of every stored series matching the selector `match` (e.g. '{job="x"}')."""
        result: list[dict[str, Any]] = self._api("/api/v1/series", {"match[]": match})
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (each with scrapeUrl, health, lastError, labels)."""
        result: list[dict[str, Any]] = self._api("/api/v1/targets", {"state": "active"})["activeTargets"]
        return result

    @contextmanager
    def scrape(self, url: str, *, bearer_token: str | None = None) -> Iterator[str]:
        """Scrape `url` every second while inside (sending `Authorization: Bearer <bearer_token>`
        if given, as for a worker with an API token); yields the job's name (its `job` label)."""
        self._next_job += 1
        job = f"scrape-{self._next_job}"
        self._scrapes[job] = Scrape(url, bearer_token)
        self._reload(lambda jobs: job in jobs)
        try:
            yield job
        finally:
            del self._scrapes[job]
            self._reload(lambda jobs: job not in jobs)

    def _reload(self, done: Callable[[set[str]], bool]) -> None:
        """Write the config, have Prometheus reload it, wait until `done(active job names)`."""
        self.config_path.write_text(yaml.safe_dump(prometheus_config(self._scrapes, self.remote_write)))
        response = self.http.post(f"{self.url}/-/reload")
        if response.status_code != 200:
            raise AssertionError(f"Prometheus refused its new config ({response.status_code}): {response.text}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not done({t["labels"].get("job", "") for t in self.targets()}):
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus did not apply its new scrape config: {self._scrapes}")
            time.sleep(0.05)


@dataclass(frozen=True)
class Scrape:
    """One scrape target of the test Prometheus."""

    url: str
    bearer_token: str | None = None


def prometheus_config(scrapes: dict[str, Scrape], remote_write: tuple[str, ...] = ()) -> dict[str, Any]:
    """Prometheus' configuration: scrape each target (by job name) every second, and send what it
    scrapes to each `remote_write` URL (used to make a Prometheus the sender of a test)."""
    jobs = []
    for job, scrape in scrapes.items():
        parts = urlsplit(scrape.url)
        scrape_config: dict[str, Any] = {
            "job_name": job, "scrape_interval": "1s", "scrape_timeout": "1s", "scheme": parts.scheme or "http",
            "metrics_path": parts.path or "/metrics", "static_configs": [{"targets": [parts.netloc]}]}
        if scrape.bearer_token is not None:
            scrape_config["authorization"] = {"type": "Bearer", "credentials": scrape.bearer_token}
        jobs.append(scrape_config)
    config: dict[str, Any] = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                              "scrape_configs": jobs}
    if remote_write:
        config["remote_write"] = [{"url": url, "queue_config": {"batch_send_deadline": "1s"}} for url in remote_write]
    return config


@contextmanager
def start_prometheus(root: Path, binary: Path = PROMETHEUS, *, port: int | None = None,
                     remote_write: tuple[str, ...] = ()) -> Iterator[PrometheusReceiver]:
    """Prometheus with its remote-write receiver and lifecycle API (config reload) on `port` (a free
    one by default; give the last one's and the same root to restart it after an outage); what it
    scrapes it also sends to each `remote_write` URL."""
    config_path = root / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config({}, remote_write)))
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(binary), f"--config.file={config_path}", f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d"]
    with httpx.Client(timeout=10) as http:

        def ready() -> bool:
            try:
                return http.get(f"{url}/-/ready").status_code == 200
            except httpx.HTTPError:
                return False

        with _daemon(argv, log_path=root / "prometheus.log", ready=ready, what="prometheus"):
            yield PrometheusReceiver(url=url, config_path=config_path, http=http, remote_write=remote_write)


# --- Graphite (carbon-cache) --------------------------------------------------------------------


@dataclass
class GraphiteReceiver:
    """A running carbon-cache: plaintext protocol (`path value timestamp\\n`) on `host`:`port`."""

    host: str
    port: int
    whisper_dir: Path

    def datapoints(self, path: str) -> list[tuple[int, float]]:
        """The (unix seconds, value) points stored so far for the metric `path` (e.g. 'vigil.cpu',
        or a tagged 'vigil.cpu;dc=a;host=h' with its tags sorted by name, as carbon stores it),
        oldest first; [] when carbon has written none yet (it writes from its cache within moments)."""
        file = self._whisper_file(path)
        if file is None:
            return []
        fetched = whisper.fetch(str(file), 0)
        if fetched is None:
            return []
        (start_s, _end_s, step_s), values = fetched
        return [(start_s + i * step_s, v) for i, v in enumerate(values) if v is not None]

    def stored_paths(self) -> list[str]:
        """Every metric path carbon has created a whisper file for, sorted."""
        return sorted(self._paths())

    def _paths(self) -> dict[str, Path]:
        # carbon's layout (carbon.util.TaggedSeries.encode): a.b.c in a/b/c.wsp; a tagged series
        # under _tagged/<hash[0:3]>/<hash[3:6]>/ with its dots written as _DOT_.
        paths = {}
        for file in self.whisper_dir.rglob("*.wsp") if self.whisper_dir.is_dir() else ():
            relative = file.relative_to(self.whisper_dir).with_suffix("")
            if relative.parts[0] == "_tagged":
                paths[relative.name.replace("_DOT_", ".")] = file
            else:
                paths[".".join(relative.parts)] = file
        return paths

    def _whisper_file(self, path: str) -> Path | None:
        if ";" in path:
            return self._paths().get(path)
        file = self.whisper_dir.joinpath(*path.split(".")).with_suffix(".wsp")
        return file if file.is_file() else None


# Every metric at 1-second precision for a day: a point a sink sends is stored as it was sent.
CARBON_RETENTIONS = "1s:1d"


def carbon_config(root: Path, *, line_port: int, pickle_port: int, query_port: int) -> Path:
    """carbon.conf and storage-schemas.conf in root/conf; returns carbon.conf's path."""
    conf, storage = root / "conf", root / "storage"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "carbon.conf").write_text(f"""\
[cache]
STORAGE_DIR = {storage}
LOCAL_DATA_DIR = {storage / 'whisper'}
LOG_DIR = {storage / 'log'}
PID_DIR = {storage}
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query_port}
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
WHISPER_AUTOFLUSH = True
WHISPER_SPARSE_CREATE = True
# No graphite-web tag database runs here to register tagged series with; carbon still stores them.
ENABLE_TAGS = False
# Tagged series' files named after the series (not its hash), so stored_paths() can list them.
TAG_HASH_FILENAMES = False
""")
    (conf / "storage-schemas.conf").write_text(f"[all]\npattern = .*\nretentions = {CARBON_RETENTIONS}\n")
    return conf / "carbon.conf"


@contextmanager
def start_carbon(root: Path, venv: Path = CARBON_VENV, *, port: int | None = None) -> Iterator[GraphiteReceiver]:
    """carbon-cache (in the foreground) with its plaintext receiver on `port` (a free one by default;
    give the last one's and the same root to restart it after an outage), storing under root."""
    line_port, pickle_port, query_port = port or free_port(), free_port(), free_port()
    config = carbon_config(root, line_port=line_port, pickle_port=pickle_port, query_port=query_port)
    argv = [str(venv / "bin" / "python"), str(venv / "bin" / "carbon-cache.py"), f"--config={config}",
            "--nodaemon", "start"]
    receiver = GraphiteReceiver(host="127.0.0.1", port=line_port, whisper_dir=root / "storage" / "whisper")
    with _daemon(argv, log_path=root / "carbon.log", ready=lambda: _accepts_tcp(receiver.host, line_port),
                 what="carbon-cache"):
        yield receiver


# --- OpenTelemetry Collector --------------------------------------------------------------------


@dataclass
class OtlpReceiver:
    """A running collector: OTLP/HTTP at `endpoint` (POST endpoint + /v1/metrics), every request
    it received written by the file exporter to `export_path` as one line of OTLP JSON."""

    endpoint: str
    export_path: Path

    def requests(self) -> list[dict[str, Any]]:
        """Every metrics request received so far, as OTLP JSON ({"resourceMetrics": [...]})."""
        if not self.export_path.is_file():
            return []
        text = self.export_path.read_text()
        # A line still being written has no newline yet: it is read next time.
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def metrics(self) -> list[dict[str, Any]]:
        """Every data point received so far, flattened: name, type, unit, attributes, resource
        (attributes), scope, time_unix_nano, start_time_unix_nano and value (gauge and sum points;
        histogram and summary points carry their count, sum and buckets or quantiles instead)."""
        return [point for request in self.requests() for point in flatten_otlp_metrics(request)]


_POINT_TYPES = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


def flatten_otlp_metrics(request: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per data point of an OTLP JSON ExportMetricsServiceRequest."""
    points = []
    for resource_metrics in request.get("resourceMetrics", []):
        resource = otlp_attributes(resource_metrics.get("resource", {}).get("attributes", []))
        for scope_metrics in resource_metrics.get("scopeMetrics", []):
            scope = scope_metrics.get("scope", {}).get("name", "")
            for metric in scope_metrics.get("metrics", []):
                kind = next((k for k in _POINT_TYPES if k in metric), None)
                if kind is None:
                    continue
                data = metric[kind]
                for point in data.get("dataPoints", []):
                    flat: dict[str, Any] = {
                        "name": metric["name"], "type": kind, "unit": metric.get("unit", ""),
                        "attributes": otlp_attributes(point.get("attributes", [])), "resource": resource,
                        "scope": scope, "time_unix_nano": int(point.get("timeUnixNano", 0)),
                        "start_time_unix_nano": int(point.get("startTimeUnixNano", 0)),
                    }
                    if "asDouble" in point:
                        flat["value"] = float(point["asDouble"])
                    elif "asInt" in point:
                        flat["value"] = int(point["asInt"])
                    else:  # histogram, exponential histogram, summary
                        flat["value"] = None
                        flat.update({k: v for k, v in point.items() if k not in ("attributes", "timeUnixNano",
                                                                                 "startTimeUnixNano")})
                        if "count" in flat:
                            flat["count"] = int(flat["count"])
                    if kind == "sum":
                        flat["is_monotonic"] = bool(data.get("isMonotonic", False))
                    if "aggregationTemporality" in data:
                        flat["temporality"] = data["aggregationTemporality"]
                    points.append(flat)
    return points


def otlp_attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON key/value list -> plain dict (int64 values arrive as strings in OTLP JSON)."""
    return {pair["key"]: otlp_value(pair.get("value", {})) for pair in pairs}


def otlp_value(value: dict[str, Any]) -> Any:
    """One OTLP JSON AnyValue as a Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return otlp_attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def otelcol_config(*, port: int, export_path: Path) -> dict[str, Any]:
    """Collector configuration: OTLP/HTTP on loopback -> file exporter; no telemetry endpoint."""
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"file": {"path": str(export_path), "format": "json", "flush_interval": "100ms",
                            "append": True}},
        "service": {
            "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}},
            # The collector would otherwise serve its own metrics on :8888.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
    }


@contextmanager
def start_otelcol(root: Path, binary: Path = OTELCOL, *, port: int | None = None) -> Iterator[OtlpReceiver]:
    """The collector (tools/otelcol) with its OTLP/HTTP receiver on `port` (a free one by default;
    give the last one's and the same root to restart it after an outage: the export file grows)."""
    port = port or free_port()
    export_path = root / "metrics.jsonl"
    config_path = root / "otelcol.yaml"
    config_path.write_text(yaml.safe_dump(otelcol_config(port=port, export_path=export_path)))
    argv = [str(binary), f"--config=file:{config_path}"]
    with _daemon(argv, log_path=root / "otelcol.log", ready=lambda: _accepts_tcp("127.0.0.1", port),
                 what="otelcol"):
        yield OtlpReceiver(endpoint=f"http://127.0.0.1:{port}", export_path=export_path)
