"""The Vigil image (Dockerfile) as built by `make image-test`: it runs `vigil`, holds only the
runtime packages (no compiler, pip or test tools), runs as the chart's non-root user on a
read-only root filesystem, and a worker in it processes events from the test session's Kafka.

Skipped unless VIGIL_TEST_IMAGE names the image (`make image-test` builds it and sets it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.sdk import Emitter
from tests.conftest import REPO, free_port, wait_until

IMAGE = os.environ.get("VIGIL_TEST_IMAGE", "")
#: podman's storage options (make: the image lives under .vigil/containers).
PODMAN = ["podman", *shlex.split(os.environ.get("VIGIL_TEST_CONTAINERS", "")), "--runtime", "runc"]
#: podman's default limits are above what a sandboxed root may set; a worker needs far fewer.
LIMITS = ["--ulimit", "nofile=10000:10000", "--ulimit", "nproc=4096:4096"]
RUN = [*PODMAN, "run", "--rm", *LIMITS]
UID = 10001

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not IMAGE, reason="image tests run with `make image-test` (it builds the image)")]


def _run(*args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*RUN, *(["--entrypoint", entrypoint] if entrypoint else []), IMAGE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_vigil_help() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: vigil" in result.stdout and "worker" in result.stdout


_INSPECT = """
import importlib.metadata as m, json, os, shutil
import pathlib, app.pipeline.intake as intake, app.native as native
from app.model.schemas import BUILTIN_SCHEMAS_DIR
from app.topics.spec import load_topics_file
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
    "distributions": {d.metadata["Name"].lower().replace("_", "-"): d.version for d in m.distributions()},
    "tools": {t: shutil.which(t) for t in ("gcc", "cc", "pip", "pip3", "mypy", "pytest", "apt-get")},
    "compiled": native.is_compiled(intake),
    "schemas_dir": str(BUILTIN_SCHEMAS_DIR),
    "schemas": sorted(p.name for p in BUILTIN_SCHEMAS_DIR.rglob("*.avsc")),
    "topics": [t.name for t in load_topics_file(pathlib.Path(os.environ["VIGIL_TOPICS_FILE"])).topics],
    "schemas_env": os.path.realpath(os.environ["VIGIL_SCHEMAS_DIR"]),
}))
"""


@pytest.fixture(scope="module")
def inside() -> dict[str, Any]:
    result = _run("-c", _INSPECT, entrypoint="python3")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def _locked(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in
            (line.strip().split("==") for line in path.read_text().splitlines() if "==" in line)}


def test_image_holds_the_runtime_packages_and_no_build_or_test_tools(inside: dict[str, Any]) -> None:
    runtime = _locked(REPO / "requirements-runtime.lock")
    installed = dict(inside["distributions"])
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert installed.pop("vigil") == version
    assert installed == runtime
    assert {tool: path for tool, path in inside["tools"].items() if path and tool != "apt-get"} == {}


def test_image_runs_compiled_modules_and_finds_its_data_in_the_installed_package(inside: dict[str, Any]) -> None:
    assert inside["compiled"] is True
    assert "/site-packages/app/_data/schemas" in inside["schemas_dir"]
    assert inside["schemas_env"] == inside["schemas_dir"]  # /opt/vigil/schemas (the Jobs' path) is the same
    assert inside["schemas"] == sorted(p.name for p in (REPO / "schemas").rglob("*.avsc"))
    assert "events" in inside["topics"]


def test_image_user_is_the_charts(inside: dict[str, Any]) -> None:
    assert (inside["uid"], inside["gid"]) == (UID, UID)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"vigil-test-{uuid.uuid4().hex[:8]}"
    yield name
    logs = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, check=False)
    print(f"--- {name} log ---\n{(logs.stdout + logs.stderr)[-4000:]}")
    subprocess.run([*PODMAN, "rm", "-f", "-t", "30", name], capture_output=True, check=False)


def test_worker_in_the_image_processes_events(isolated_settings: Settings, tmp_path: Path,
                                              container_name: str) -> None:
    """As the chart runs it: read-only root, /tmp and the state directory writable, non-root."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)
    port = free_port()
    started = subprocess.run([
        *PODMAN, "run", "-d", *LIMITS, "--name", container_name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp", "-v", f"{state}:/var/lib/vigil/state",
        "-e", f"VIGIL_KAFKA_BOOTSTRAP={isolated_settings.kafka_bootstrap}",
        "-e", f"VIGIL_SCHEMA_REGISTRY_URL={isolated_settings.schema_registry_url}",
        "-e", f"VIGIL_TOPIC_PREFIX={isolated_settings.topic_prefix}",
        IMAGE, "worker", "--stage", "pipeline", "--instance-id", "image-0",
        "--app-id", f"image-{uuid.uuid4().hex[:6]}", "--http", f"127.0.0.1:{port}"],
        capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout_s=180, interval_s=0.5, message="the worker in the image to be healthy")
    subject = f"image-{uuid.uuid4().hex[:6]}"
    emitter = Emitter(isolated_settings)
    try:
        for n in range(3):
            emitter.emit(subject=subject, name="heartbeat", text=f"beat {n}", ttl=60)
        emitter.flush()
    finally:
        emitter.close()

    def status() -> dict[str, Any] | None:
        body = httpx.get(f"{url}/status", params={"subject": subject, "name": "heartbeat"}, timeout=5).json()
        found = [s for s in body.get("statuses", []) if s["event_count"] == 3]
        return found[0] if found else None

    current = wait_until(status, timeout_s=120, interval_s=0.5, message="the worker in the image to count 3 events")
    assert current["text"] == "beat 2"
    stopped = subprocess.run([*PODMAN, "stop", "-t", "60", container_name], capture_output=True, text=True,
                             check=False)
    assert stopped.returncode == 0, stopped.stderr
    exited = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.ExitCode}}", container_name],
                            capture_output=True, text=True, check=False)
    assert exited.stdout.strip() == "0"  # SIGTERM: batch finished, flushed, committed
    assert any(state.iterdir())  # the RocksDB state went to the mounted volume
