"""The worker's and executor's HTTP API with a bearer token (app.api_token), over real HTTP on
127.0.0.1: /healthz stays open for probes, everything else needs the token; /metrics can be left
open for Prometheus; the token comes from the environment or a file."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from app.api_token import ApiTokenError, is_authorized, load_api_token, metrics_open
from app.cli import CliContext
from app.pipeline.cli import status_command
from app.runtime.http import HttpApi
from tests.conftest import free_port

TOKEN = b"0123456789abcdef-worker-token"


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers: list[HttpApi] = []

    def start(**kwargs: object) -> str:
        api = HttpApi("127.0.0.1", free_port(), CollectorRegistry(), lambda: (True, {}), lock=threading.RLock(),
                      routes={"/status": lambda query: (200, {"items": [], "partitions": [0]})}, **kwargs)
        api.start()
        servers.append(api)
        return f"http://127.0.0.1:{api.port}"

    yield start
    for api in servers:
        api.stop()


def _get(url: str, token: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token.decode()}"} if token else {}
    with httpx.Client(trust_env=False) as client:
        return client.get(url, headers=headers)


def test_token__guards_routes_and_metrics_but_not_healthz(serve) -> None:
    url = serve(token=TOKEN)
    assert _get(f"{url}/healthz").status_code == 200, "probes send no token"
    for path in ("/status", "/metrics", "/nope"):
        refused = _get(f"{url}{path}")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "VIGIL_API_TOKEN" in refused.json()["error"]
        assert _get(f"{url}{path}", b"wrong-token-wrong-token").status_code == 401
    assert _get(f"{url}/status", TOKEN).json() == {"items": [], "partitions": [0]}
    assert _get(f"{url}/metrics", TOKEN).status_code == 200
    assert _get(f"{url}/nope", TOKEN).status_code == 404


def test_metrics_open__leaves_only_metrics_open(serve) -> None:
    url = serve(token=TOKEN, metrics_open=True)
    assert _get(f"{url}/metrics").status_code == 200
    assert _get(f"{url}/status").status_code == 401


def test_no_token__everything_open(serve) -> None:
    url = serve()
    assert [_get(f"{url}{p}").status_code for p in ("/healthz", "/metrics", "/status")] == [200, 200, 200]


def test_vigil_status__sends_the_token_from_the_environment(serve, monkeypatch, tmp_path: Path) -> None:
    url = serve(token=TOKEN)
    runner = CliRunner()
    result = runner.invoke(status_command, ["--worker", url], obj=CliContext())
    assert result.exit_code == 1 and "requires a token: set VIGIL_API_TOKEN" in result.stderr
    token_file = tmp_path / "token"
    token_file.write_bytes(TOKEN + b"\n")
    monkeypatch.setenv("VIGIL_API_TOKEN_FILE", str(token_file))
    result = runner.invoke(status_command, ["--worker", url], obj=CliContext())
    assert result.exit_code == 0, result.stderr


def test_load_api_token__env_or_file(tmp_path: Path) -> None:
    assert load_api_token({}) is None
    assert load_api_token({"VIGIL_API_TOKEN": f" {TOKEN.decode()} "}) == TOKEN
    path = tmp_path / "t"
    path.write_bytes(TOKEN + b"\n")
    assert load_api_token({"VIGIL_API_TOKEN_FILE": str(path)}) == TOKEN


@pytest.mark.parametrize(("env", "words"), [
    ({"VIGIL_API_TOKEN": "a" * 20, "VIGIL_API_TOKEN_FILE": "/x"}, "set only one"),
    ({"VIGIL_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read the API token file"),
    ({"VIGIL_API_TOKEN": "short"}, "is 5 bytes; use at least 16"),
])
def test_load_api_token__explains_bad_settings(env, words) -> None:
    with pytest.raises(ApiTokenError, match=words):
        load_api_token(env)


def test_is_authorized__bearer_or_basic_password_in_constant_time() -> None:
    assert is_authorized(f"Bearer {TOKEN.decode()}", TOKEN)
    assert is_authorized(f"bearer   {TOKEN.decode()}  ", TOKEN)
    assert not is_authorized(None, TOKEN) and not is_authorized("Bearer ", TOKEN)
    assert not is_authorized(f"Token {TOKEN.decode()}", TOKEN)
    basic = "Basic " + base64.b64encode(b"user:" + TOKEN).decode()
    assert not is_authorized(basic, TOKEN) and is_authorized(basic, TOKEN, allow_basic=True)


def test_metrics_open__reads_truthy_values() -> None:
    assert [metrics_open({"VIGIL_API_METRICS_OPEN": v}) for v in ("true", "1", "yes", "", "false")] == \
        [True, True, True, False, False]
