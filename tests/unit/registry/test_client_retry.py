"""RegistryClient against a real HTTP server on 127.0.0.1 that fails on purpose: retriable
answers (503, 429, 408, a proxy's 502 page, connection refused) are retried with backoff until the
deadline; a definite answer (404/40403, 422) is raised at once; non-idempotent calls are not
retried."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.config import Settings
from app.registry.client import RegistryClient, RegistryError, RegistryUnavailable
from tests.conftest import free_port

SCHEMA = '{"type": "record", "name": "R", "fields": []}'


class ScriptedRegistry:
    """Answers each request with the next scripted (status, body) for its method and path; once a
    script is used up, the last answer repeats. Records every request seen."""

    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = registry.next_answer(self.command, self.path.split("?")[0])
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def script(self, method: str, path: str, *answers: tuple[int, object]) -> None:
        self.scripts[(method, path)] = [(s, b if isinstance(b, str) else json.dumps(b)) for s, b in answers]

    def next_answer(self, method: str, path: str) -> tuple[int, str]:
        with self._lock:
            self.seen.append((method, path))
            answers = self.scripts.get((method, path)) or [(404, json.dumps({"error_code": 404, "message": "?"}))]
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return self.seen.count((method, path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def _error(status: int, code: int, message: str) -> tuple[int, object]:
    return status, {"error_code": code, "message": message}


@pytest.fixture
def server() -> Iterator[ScriptedRegistry]:
    scripted = ScriptedRegistry()
    yield scripted
    scripted.close()


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def client(server: ScriptedRegistry, delays: list[float]) -> Iterator[RegistryClient]:
    """A client that records its backoff delays instead of sleeping (deadline: far away)."""
    made = RegistryClient(server.url, retry_deadline_s=3600, sleep=delays.append)
    yield made
    made.close()


def test_schema_by_id__retries_503_429_408_then_answers(server: ScriptedRegistry, client: RegistryClient,
                                                        delays: list[float]) -> None:
    server.script("GET", "/schemas/ids/7", _error(503, 50003, "store unavailable"), _error(429, 429, "slow down"),
                  (408, "request timeout"), (200, {"schema": SCHEMA}))
    assert client.schema_by_id(7) == SCHEMA
    assert server.count("GET", "/schemas/ids/7") == 4
    assert len(delays) == 3 and all(d >= 0 for d in delays)
    assert client.schema_by_id(7) == SCHEMA  # cached: no fifth request
    assert server.count("GET", "/schemas/ids/7") == 4


def test_register_and_lookup__idempotent_posts_are_retried(server: ScriptedRegistry, client: RegistryClient) -> None:
    server.script("POST", "/subjects/acme.R/versions", _error(500, 50001, "Error in the backend data store"),
                  (200, {"id": 3}))
    server.script("POST", "/subjects/acme.R", (502, "<html>Bad Gateway</html>"),
                  (200, {"subject": "acme.R", "version": 1, "id": 3, "schema": SCHEMA}))
    assert client.register("acme.R", SCHEMA) == 3
    assert client.lookup("acme.R", SCHEMA).id == 3
    assert (server.count("POST", "/subjects/acme.R/versions"), server.count("POST", "/subjects/acme.R")) == (2, 2)


def test_unknown_schema_id__is_raised_at_once_as_schema_not_found(server: ScriptedRegistry,
                                                                  client: RegistryClient) -> None:
    server.script("GET", "/schemas/ids/99", _error(404, 40403, "Schema 99 not found"))
    with pytest.raises(RegistryError) as caught:
        client.schema_by_id(99)
    error = caught.value
    assert (error.status, error.error_code, error.is_schema_not_found(), error.is_retriable()) == (404, 40403, True,
                                                                                                   False)
    assert server.count("GET", "/schemas/ids/99") == 1


@pytest.mark.parametrize(("status", "code"), [(422, 42201), (409, 409), (401, 401), (400, 400)])
def test_client_errors__are_not_retried(server: ScriptedRegistry, client: RegistryClient, status: int,
                                        code: int) -> None:
    server.script("POST", "/subjects/acme.R/versions", _error(status, code, "no"), (200, {"id": 1}))
    with pytest.raises(RegistryError) as caught:
        client.register("acme.R", SCHEMA)
    assert (caught.value.status, caught.value.error_code, caught.value.is_retriable()) == (status, code, False)
    assert server.count("POST", "/subjects/acme.R/versions") == 1


def test_a_registry_that_stays_down__raises_the_last_error_after_the_deadline(server: ScriptedRegistry) -> None:
    server.script("GET", "/subjects/acme.R/versions/latest", _error(503, 50003, "still starting"))
    client = RegistryClient(server.url, retry_deadline_s=0.3)
    try:
        with pytest.raises(RegistryError) as caught:
            client.version("acme.R")
    finally:
        client.close()
    assert (caught.value.status, caught.value.is_retriable()) == (503, True)
    assert "still starting" in str(caught.value)
    assert server.count("GET", "/subjects/acme.R/versions/latest") >= 2


def test_connection_refused__is_registry_unavailable_after_retries() -> None:
    tried: list[float] = []
    client = RegistryClient(f"http://127.0.0.1:{free_port()}", retry_deadline_s=0.3, sleep=_sleeping(tried))
    try:
        with pytest.raises(RegistryUnavailable, match="cannot reach the schema registry at http://127.0.0.1") as caught:
            client.schema_by_id(1)
    finally:
        client.close()
    assert caught.value.is_retriable() and not caught.value.is_not_found()
    assert len(tried) >= 1


def test_retry_deadline_zero__tries_once(server: ScriptedRegistry) -> None:
    server.script("GET", "/subjects", _error(503, 50003, "down"), (200, []))
    client = RegistryClient(server.url, retry_deadline_s=0)
    try:
        with pytest.raises(RegistryError, match="down"):
            client.subjects()
        assert client.subjects() == []
    finally:
        client.close()
    assert server.count("GET", "/subjects") == 2


def test_delete_and_ping__are_not_retried(server: ScriptedRegistry, client: RegistryClient) -> None:
    server.script("DELETE", "/subjects/acme.R", _error(503, 50003, "down"), (200, [1]))
    server.script("GET", "/subjects", _error(503, 50003, "down"), (200, []))
    with pytest.raises(RegistryError, match="down"):
        client.delete_subject("acme.R")
    assert not client.ping()
    assert client.ping()
    assert (server.count("DELETE", "/subjects/acme.R"), server.count("GET", "/subjects")) == (1, 2)


def test_from_settings__takes_the_retry_deadline() -> None:
    client = RegistryClient.from_settings(Settings(schema_registry_retry_deadline_s=1.5))
    try:
        assert client.retry_deadline_s == 1.5
    finally:
        client.close()


def _sleeping(record: list[float]) -> Callable[[float], None]:
    def sleep(delay_s: float) -> None:
        record.append(delay_s)
        time.sleep(delay_s)

    return sleep
