"""`vigil ui` settings: the `ui:` section of vigil.yaml, then environment variables, then flags.

    ui:
      listen: 127.0.0.1:8090           # HOST:PORT (VIGIL_UI_LISTEN, --listen)
      workers: [http://127.0.0.1:8088]  # worker HTTP APIs (VIGIL_WORKER_URL, --worker)
      token: ${file:/run/secrets/api}  # bearer token; default: VIGIL_API_TOKEN (or _FILE), Vigil's one token
      auth_reads: false                # with a token: also required for reads (VIGIL_UI_AUTH_READS)
      cors_origins: []                 # origins allowed to call the API from a browser (closed by default)
      history_retention: 30d           # alerts, actions and results kept in the history store
      metrics_retention: 6h            # closed metric windows kept in the history store
      metrics_window_sizes: [1m]       # which window sizes the store keeps (default: the largest)
      stream_buffer: 20000             # changes kept for reconnecting stream clients (Last-Event-ID)
      max_page: 1000                   # the largest page any list endpoint answers
      backtest_max_range: 7d           # the widest range a backtest may read

The history store lives in `<state_dir>/ui/history.sqlite3` (or `data_dir`). Its size grows with
identities x metrics x metrics_retention / window size: 1,000 identities with one metric keep
360,000 one-minute windows over 6 h.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from app.api_token import load_api_token
from app.config import ConfigError, Settings, resolve_secret_refs
from app.pipeline.config import DurationMs

__all__ = ["DEFAULT_LISTEN", "DEFAULT_UI_PORT", "UiConfig", "load_ui_config"]

#: 8090: clear of the worker (8088), the HTTP bridge (8080), the registry (8081) and Kafka (9092/9093).
DEFAULT_UI_PORT: Final = 8090
DEFAULT_LISTEN: Final = f"127.0.0.1:{DEFAULT_UI_PORT}"
DEFAULT_WORKER: Final = "http://127.0.0.1:8088"


class UiConfig(BaseModel):
    """What the UI server needs beyond Settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=True)

    listen: str = DEFAULT_LISTEN
    workers: tuple[str, ...] = (DEFAULT_WORKER,)
    token: SecretStr | None = None
    auth_reads: bool = False
    cors_origins: tuple[str, ...] = ()
    history_retention_ms: DurationMs = Field(30 * 86_400_000, alias="history_retention")
    metrics_retention_ms: DurationMs = Field(6 * 3_600_000, alias="metrics_retention")
    metrics_window_sizes_ms: tuple[DurationMs, ...] | None = Field(None, alias="metrics_window_sizes")
    stream_buffer: int = Field(20_000, ge=100, le=1_000_000)
    max_page: int = Field(1000, ge=10, le=100_000)
    backtest_max_range_ms: DurationMs = Field(7 * 86_400_000, alias="backtest_max_range")
    data_dir: Path | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, e.g. {DEFAULT_LISTEN}; got {v!r}")
        return v

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            if not re.match(r"^https?://[^/]+", url):
                raise ValueError(f"{url!r}: expected an http(s) URL such as {DEFAULT_WORKER}")
        return tuple(u.rstrip("/") for u in v)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def token_text(self) -> str | None:
        """The bearer token, or None when the API is open."""
        if self.token is None or not self.token.get_secret_value():
            return None
        return self.token.get_secret_value()

    def store_path(self, settings: Settings) -> Path:
        return (self.data_dir or Path(settings.state_dir) / "ui") / "history.sqlite3"


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", value) if part]


def load_ui_config(settings: Settings, env: Mapping[str, str] | None = None, **overrides: Any) -> UiConfig:
    """The UI's settings from `settings.ui`, the environment and explicit overrides (None = not given);
    ConfigError naming the field when one is wrong."""
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(settings.ui)
    if env.get("VIGIL_UI_LISTEN"):
        values["listen"] = env["VIGIL_UI_LISTEN"]
    if env.get("VIGIL_WORKER_URL"):
        values["workers"] = _split(env["VIGIL_WORKER_URL"])
    if env.get("VIGIL_UI_AUTH_READS"):
        values["auth_reads"] = env["VIGIL_UI_AUTH_READS"]
    if env.get("VIGIL_UI_CORS_ORIGINS"):
        values["cors_origins"] = _split(env["VIGIL_UI_CORS_ORIGINS"])
    api_token = load_api_token(env)  # the token every Vigil HTTP endpoint takes (app.api_token)
    if api_token is not None and "token" not in values:
        values["token"] = api_token.decode("utf-8", "replace")
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    if isinstance(values.get("token"), str):
        values["token"] = resolve_secret_refs(values["token"], where="ui.token")
    try:
        return UiConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"ui.{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                             for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
