"""The UI on the session's real Kafka: a worker (pipeline, members, rules with tests/data/web/rules)
and an executor as subprocesses, the UI server in a thread, on topics of their own per module."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.bus.clients import make_admin
from app.config import Settings
from app.topics.admin import reconcile
from app.topics.spec import load_topics_file
from app.web.testing import UiStack
from tests.conftest import REPO, wait_until

RULES = REPO / "tests" / "data" / "web" / "rules"
#: Screenshots of the browser tests (test artifacts; look at them).
ARTIFACTS = REPO / ".vigil" / "artifacts" / "ui"


@pytest.fixture(scope="module")
def web_settings(settings: Settings) -> Settings:
    """The session's Kafka and registry, with a topic prefix of this module's own."""
    prefix = f"ui{uuid.uuid4().hex[:8]}-"
    s = settings.model_copy(update={"topic_prefix": prefix})
    reconcile(make_admin(s), load_topics_file(REPO / "topics.yaml").with_prefix(prefix).topics, dry_run=False)
    return s


@pytest.fixture(scope="module")
def stack(web_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    """Worker, executor and UI server on this module's topics (rules: a copy of tests/data/web/rules)."""
    home = tmp_path_factory.mktemp("ui-stack")
    rules = home / "rules"
    shutil.copytree(RULES, rules)
    with UiStack(web_settings, home, rules_dir=rules).start() as running:
        yield running


class Api:
    """GET/POST/DELETE on the UI server's /api/v1 (JSON)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(path, params=params)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text}"
        return resp.json()

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def api(stack: UiStack) -> Iterator[Api]:
    client = Api(stack.ui_url)
    yield client
    client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for_status(api: Api, subject: str, name: str, state: str, *, timeout_s: float = 60) -> dict[str, Any]:
    """The identity's row once the UI shows it in `state`."""
    def found() -> dict[str, Any] | None:
        items = api.get("/status", subject=subject, name=name)["items"]
        return next((r for r in items if r["state"] == state), None)

    return wait_until(found, timeout_s=timeout_s, message=f"{subject}/{name} {state} on the UI's /status")


def wait_for_actions(api: Api, *, target: str, count: int, timeout_s: float = 60, **filters: Any) -> list[Any]:
    """The actions for `target` once there are `count` of them that are no longer PENDING."""
    def found() -> list[Any] | None:
        rows = api.get("/actions", target=target, since="1h", **filters)["actions"]
        done = [r for r in rows if r["status"] != "PENDING"]
        return done if len(done) >= count else None

    return wait_until(found, timeout_s=timeout_s, message=f"{count} finished action(s) for {target} {filters}")
