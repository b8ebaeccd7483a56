"""`vigil status`, `members`, `metrics`, `actions`, `trace` and `silence` through the Vigil API print
what they print without it (asking the workers, reading the topics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from app.web.testing import UiStack
from tests.conftest import REPO, wait_until
from tests.integration.web.conftest import Api, unique, wait_for_actions, wait_for_status


def vigil(stack: UiStack, *args: str, api: str | None = None) -> subprocess.CompletedProcess[str]:
    """`vigil ARGS` against the stack: through its API (`api` given) or on the old path (`--api ''`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIGIL_KAFKA_BOOTSTRAP": stack.settings.kafka_bootstrap,
           "VIGIL_SCHEMA_REGISTRY_URL": stack.settings.schema_registry_url,
           "VIGIL_TOPIC_PREFIX": stack.settings.topic_prefix, "VIGIL_CONFIG": "/nonexistent/vigil.yaml"}
    env.pop("VIGIL_WORKER_URL", None)
    env.pop("VIGIL_API_URL", None)
    extra = ["--api", api] if api is not None else ["--api", ""]
    if api is None and args[0] in ("status", "members", "metrics"):
        extra += ["--worker", stack.worker_url]
    return subprocess.run([sys.executable, "-m", "app", *args, *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def lines(result: subprocess.CompletedProcess[str]) -> list[Any]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def story(stack: UiStack, api: Api) -> dict[str, str]:
    """A host with a critical disk (two rules fire, one follow-on event), a heartbeat, and a silence."""
    host = unique("cli")
    cause = stack.emit(host, "disk:/", kind="STATUS", severity=2, text="98% full", tags={"role": "app"})
    stack.emit(host, "heartbeat", kind="STATUS", severity=0, ttl=3600)
    stack.emit(host, "load", kind="METRIC", metrics={"load1": 2.5})
    wait_for_status(api, host, "disk:/", "CRITICAL")
    wait_for_status(api, host, "heartbeat", "OK")
    wait_for_actions(api, target=host, count=3)
    return {"host": host, "cause": cause}


@pytest.mark.parametrize("args", [
    ("status", "{host}", "--json"), ("status", "{host}", "--state", "critical", "--json"), ("members", "--json"),
    ("metrics", "{host}", "load", "--json"), ("actions", "--target", "{host}", "--json"),
    ("trace", "{cause}", "--json")])
def test_the_same_answer_with_and_without_the_api(stack: UiStack, story: dict[str, str], args: tuple[str, ...]) -> None:
    argv = [a.format(**story) for a in args]
    through_api = lines(vigil(stack, *argv, api=stack.ui_url))
    directly = lines(vigil(stack, *argv))
    assert through_api, "the command found nothing"
    assert through_api == directly


def test_text_output_is_the_same_too(stack: UiStack, story: dict[str, str]) -> None:
    for argv in (("actions", "--target", story["host"]), ("trace", story["cause"])):
        through_api, directly = vigil(stack, *argv, api=stack.ui_url), vigil(stack, *argv)
        assert through_api.returncode == directly.returncode == 0, through_api.stderr + directly.stderr
        assert through_api.stdout == directly.stdout and story["host"] in through_api.stdout


def test_silences_through_the_api(stack: UiStack, story: dict[str, str], api: Api) -> None:
    added = lines(vigil(stack, "silence", "add", "--match", f"subject={story['host']}", "--for", "1h", "--reason",
                        "disk swap", "--json", api=stack.ui_url))[0]
    assert added["reason"] == "disk swap" and added["match"] == {"subject": story["host"]}
    wait_until(lambda: added["id"] in {s["id"] for s in api.get("/silences")["silences"]},
               message="the silence in the UI")
    listed_api = lines(vigil(stack, "silence", "list", "--json", api=stack.ui_url))
    listed_topic = wait_until(lambda: (found := lines(vigil(stack, "silence", "list", "--json")))
                              and added["id"] in {s["id"] for s in found} and found, message="the silence on the topic")
    assert listed_api == listed_topic
    removed = vigil(stack, "silence", "remove", added["id"][:12], api=stack.ui_url)
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed {added['id']}"
    assert lines(vigil(stack, "silence", "list", "--json", api=stack.ui_url)) == []


def test_an_api_that_does_not_answer(stack: UiStack) -> None:
    explicit = vigil(stack, "status", api="http://127.0.0.1:9")
    assert explicit.returncode == 1 and "does not answer" in explicit.stderr
