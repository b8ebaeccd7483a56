"""Credentials of the push sinks, only ever from the environment or a file named there (never from
vigil.yaml or from events), read like every other Vigil secret (app.secret_env):

- VIGIL_SINK_REMOTE_WRITE_PASSWORD / _FILE: the remote-write basic-auth password (the user is
  `sinks.remote_write.username`)
- VIGIL_SINK_REMOTE_WRITE_BEARER_TOKEN / _FILE: a bearer token for remote-write instead
- VIGIL_SINK_OTLP_HEADERS / _FILE: extra OTLP request headers, `name=value` pairs separated by
  commas (as OTEL_EXPORTER_OTLP_HEADERS), e.g. `Authorization=Bearer abc,X-Scope-OrgID=team1`
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from app.config import ConfigError
from app.secret_env import load_secret

__all__ = ["otlp_headers", "remote_write_auth"]


def _secret(name: str, what: str, environ: Mapping[str, str] | None) -> str | None:
    value = load_secret(name, f"{name}_FILE", what=what, min_bytes=1, error=ConfigError, environ=environ)
    return None if value is None else value.decode()


def remote_write_auth(username: str | None, environ: Mapping[str, str] | None = None
                      ) -> tuple[tuple[str, str] | None, dict[str, str]]:
    """(basic auth or None, extra headers) of the remote-write sink."""
    password = _secret("VIGIL_SINK_REMOTE_WRITE_PASSWORD", "remote-write password", environ)
    token = _secret("VIGIL_SINK_REMOTE_WRITE_BEARER_TOKEN", "remote-write bearer token", environ)
    if token is not None and (username or password):
        raise ConfigError("remote-write sink: both basic auth (sinks.remote_write.username, "
                          "VIGIL_SINK_REMOTE_WRITE_PASSWORD) and VIGIL_SINK_REMOTE_WRITE_BEARER_TOKEN are set; "
                          "use one of them")
    if password is not None and not username:
        raise ConfigError("remote-write sink: VIGIL_SINK_REMOTE_WRITE_PASSWORD is set but "
                          "sinks.remote_write.username is not; set the user too")
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return ((username, password or "") if username else None), headers


def otlp_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The extra headers of the OTLP sink (empty when none are set)."""
    text = _secret("VIGIL_SINK_OTLP_HEADERS", "OTLP headers", environ)
    headers: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"VIGIL_SINK_OTLP_HEADERS: expected name=value pairs separated by commas, got "
                              f"{name.strip()!r} without '='")
        headers[unquote(name.strip())] = unquote(value.strip())
    return headers
