"""The http plugin against a real local server; email message building; the @action registry."""

from __future__ import annotations

import json

import pytest

from app.executor.config import ExecutorConfig
from app.executor.plugin import ActionCall, ActionRejected, PluginRegistry, action
from app.executor.plugins.smtp import build_message
from app.model.events import Action
from tests.unit.executor.conftest import make_action
from tests.unit.executor.http_server import idempotent_api


@pytest.fixture
def api():
    with idempotent_api() as server:
        yield server


def http(action_id: str, url: str, **params: object) -> dict:
    return make_action(action_id, type="http", params={"url": url, **params})


def test_http__sends_idempotency_key_method_headers_and_json(executor, api) -> None:
    h = executor()
    h.run(http("h1", f"{api.url}/hook", method="put", headers={"X-Team": "ops", "idempotency-key": "forged"},
               json={"host": "web1"}))
    [result] = h.results()
    assert result.status == "SUCCEEDED" and result.output.startswith("HTTP 200")
    [seen] = api.requests
    assert (seen.method, seen.path, json.loads(seen.body)) == ("PUT", "/hook", {"host": "web1"})
    assert seen.headers["idempotency-key"] == "h1", "the action id, whatever the params say"
    assert seen.headers["x-team"] == "ops"


def test_http__5xx_is_retried_then_dead_lettered(executor, api) -> None:
    h = executor(retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(http("h1", f"{api.url}/status/503", body="x"))
    [result] = h.results()
    assert (result.status, result.attempts) == ("FAILED", 3)
    assert "HTTP 503" in result.error and "as requested" in result.output
    assert len(api.requests) == 3 and len(h.outputs("actions-dlq")) == 1


def test_http__4xx_is_not_retried(executor, api) -> None:
    h = executor(retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(http("h1", f"{api.url}/status/404"))
    assert [(r.status, r.attempts) for r in h.results()] == [("FAILED", 1)]


def test_http__connection_refused_fails(executor) -> None:
    from tests.conftest import free_port

    h = executor(retries={"max_attempts": 1})
    h.run(http("h1", f"http://127.0.0.1:{free_port()}/"))
    [result] = h.results()
    assert result.status == "FAILED" and "Cannot connect to host 127.0.0.1" in result.error


@pytest.mark.parametrize(("params", "error"), [
    ({"url": "file:///etc/passwd"}, "url must start with http"),
    ({"url": "http://x", "method": "TRACE"}, "method 'TRACE'"),
    ({"url": "http://x", "json": {}, "body": "x"}, "json or body, not both"),
    ({"url": "http://x", "headers": {"a": 1}}, "value(s) of a must be strings"),
    ({"url": "http://x", "timeout": "10"}, "param timeout must be int or float"),
    ({"url": "http://x", "verify": False}, "unknown param(s) verify"),
])
def test_http__bad_params_rejected(executor, params, error) -> None:
    h = executor()
    h.run(make_action("h1", type="http", params=params))
    [result] = h.results()
    assert result.status == "REJECTED" and error in result.error


def _call(params: dict, **config: object) -> ActionCall:
    action = Action.from_record(make_action("m1", type="email", params=params))
    return ActionCall(action=action, params=params, attempt=1, timeout_s=5, config=ExecutorConfig(**config))


def test_email__message_from_params_with_action_headers() -> None:
    config = ExecutorConfig(smtp={"from": "vigil@example.com"})
    msg = build_message(_call({"to": ["a@example.com", "B <b@example.com>"], "cc": "c@example.com",
                               "subject": "disk full", "body": "web1 /var at 99%"}), config.smtp)
    assert (msg["From"], msg["To"], msg["Cc"]) == ("vigil@example.com", "a@example.com, B <b@example.com>",
                                                   "c@example.com")
    assert msg["Message-ID"] == "<m1@vigil>" and msg["X-Vigil-Trace-Id"] == "trace-1"
    assert msg.get_content().strip() == "web1 /var at 99%"


@pytest.mark.parametrize(("params", "error"), [
    ({"subject": "x"}, "param to is required"),
    ({"to": "nobody", "subject": "x"}, "is not an email address"),
    ({"to": "a@b.c\r\nBcc: evil@x.y", "subject": "x"}, "is not an email address"),
    ({"to": "a@b.c", "subject": "x\nBcc: evil@x.y"}, "subject must be one line"),
    ({"to": "a@b.c", "subject": "x", "from": "ceo@b.c"}, "unknown param(s) from"),
])
def test_email__bad_params_rejected(params, error) -> None:
    with pytest.raises(ActionRejected, match=error.replace("(", r"\(").replace(")", r"\)")):
        build_message(_call(params), ExecutorConfig(smtp={}).smtp)


def test_email__without_smtp_section_rejected(executor) -> None:
    h = executor()
    h.run(make_action("m1", type="email", params={"to": "a@b.c", "subject": "x"}))
    [result] = h.results()
    assert result.status == "REJECTED" and "no smtp section" in result.error


def test_action_decorator__registers_and_checks_names() -> None:
    reg = PluginRegistry()

    @action("my-plugin", idempotent=True, registry=reg)
    def mine(call: ActionCall) -> str:
        """Do my thing."""
        return "ok"

    spec = reg.get("my-plugin")
    assert spec is not None and spec.idempotent and spec.help == "Do my thing." and not spec.is_async
    assert mine(None) == "ok", "the function is returned unchanged"
    with pytest.raises(ValueError, match="use letters"):
        action("bad name")
