"""Vigil's client and serde against another Confluent-API registry (AxonOps), when it is installed.

The binary is built with `go install` into .vigil/bin/schema-registry; where that cannot be done
(e.g. no access to the Go module proxy) the test is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.model.schemas import load_schema_dir, parse_schema_text
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient
from app.registry.files import check_schema, register_schemas
from tests.conftest import REPO, free_port, wait_until
from tests.unit.registry.compat_cases import BASE, HOST, record

PEER = REPO / ".vigil" / "bin" / "schema-registry"
INSTALL_LOG = REPO / ".vigil" / "registry-peer-install.log"


def _skip_reason() -> str:
    reason = f"peer registry not installed ({PEER} is missing)"
    if INSTALL_LOG.is_file():
        reason += f"; {INSTALL_LOG.name}:\n{INSTALL_LOG.read_text(errors='replace').strip()[-2000:]}"
    return reason


@pytest.fixture(scope="module")
def peer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (PEER.is_file() and os.access(PEER, os.X_OK)):
        pytest.skip(_skip_reason())
    port = free_port()
    log_path: Path = tmp_path_factory.mktemp("peer") / "peer.log"
    env = {**os.environ, "SCHEMA_REGISTRY_HOST": "127.0.0.1", "SCHEMA_REGISTRY_PORT": str(port),
           "SCHEMA_REGISTRY_STORAGE_TYPE": "memory"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(PEER)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"peer registry exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            return httpx.get(f"{url}/subjects", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout_s=30, message=f"peer registry at {url}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_peer__client_register_lookup_and_serde_round_trip(peer_url: str) -> None:
    client = RegistryClient(peer_url)
    schema = parse_schema_text(BASE)
    serde = AvroSerde(client)
    data = serde.encode({"host": "web1", "value": 3}, schema)
    assert AvroSerde(RegistryClient(peer_url)).decode(data) == {"host": "web1", "value": 3}
    found = client.lookup(schema.fullname, schema.text)
    assert found.version == 1 and client.versions(schema.fullname) == [1]


def test_peer__vigil_schemas_register_and_check(peer_url: str) -> None:
    client = RegistryClient(peer_url)
    schemas = list(load_schema_dir(REPO / "schemas").values())
    results = register_schemas(client, schemas)
    assert all(r.schema_id is not None for r in results), [r.error for r in results if r.error]
    assert all(check_schema(client, s).is_compatible for s in schemas)
    subject = parse_schema_text(BASE).fullname
    client.register(subject, BASE)
    report = client.check_compatibility(subject, record(HOST, {"name": "value", "type": "string"}))
    assert not report.is_compatible
