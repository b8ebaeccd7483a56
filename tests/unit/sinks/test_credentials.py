"""Sink credentials come from the environment or files only."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError
from app.sinks.credentials import otlp_headers, remote_write_auth


def test_remote_write__basic_auth_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    assert remote_write_auth("vigil", {"VIGIL_SINK_REMOTE_WRITE_PASSWORD_FILE": str(secret)}) == \
        (("vigil", "s3cret"), {})


def test_remote_write__bearer_token() -> None:
    assert remote_write_auth(None, {"VIGIL_SINK_REMOTE_WRITE_BEARER_TOKEN": "abc"}) == \
        (None, {"Authorization": "Bearer abc"})
    assert remote_write_auth(None, {}) == (None, {})


@pytest.mark.parametrize(("user", "env", "says"), [
    ("vigil", {"VIGIL_SINK_REMOTE_WRITE_BEARER_TOKEN": "abc"}, "use one of them"),
    (None, {"VIGIL_SINK_REMOTE_WRITE_PASSWORD": "pw"}, "username is not"),
    (None, {"VIGIL_SINK_REMOTE_WRITE_PASSWORD": "pw", "VIGIL_SINK_REMOTE_WRITE_PASSWORD_FILE": "/x"}, "only one"),
])
def test_remote_write__contradictions_are_refused(user, env, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        remote_write_auth(user, env)


def test_otlp_headers__pairs_like_otel_exporter_otlp_headers() -> None:
    assert otlp_headers({"VIGIL_SINK_OTLP_HEADERS": "Authorization=Bearer%20x, X-Scope-OrgID=team1"}) == \
        {"Authorization": "Bearer x", "X-Scope-OrgID": "team1"}
    assert otlp_headers({}) == {}
    with pytest.raises(ConfigError, match="name=value"):
        otlp_headers({"VIGIL_SINK_OTLP_HEADERS": "novalue"})
