"""executor.yaml: the shell allowlist, SMTP, concurrency, retries and limits of `vigil executor`.

Every key is optional; without a file the executor runs print, fire_event and http with the
defaults below, refuses every shell action (empty allowlist) and every email (no smtp section),
and plugins reach only public addresses over http/https on ports 80 and 443 (`outbound`, see
app.executor.allowlist).
Secrets are never written in the file: `smtp.password: ${env:SMTP_PASSWORD}` or
`${file:/run/secrets/smtp}`. Errors name the file, the line and the field:
`executor.yaml:12: commands.restart.argv: the program '{x}' must be fixed: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from app.config import ConfigError, resolve_secret_refs
from app.durations import DurationError, parse_duration_ms
from app.executor.allowlist import OutboundConfig
from app.executor.argv import ArgvError, ArgvTemplate, parse_argv_template
from app.orchestration.config import OrchestrationConfig
from app.yamlfile import load_yaml_model

__all__ = [
    "CommandConfig",
    "ExecutorConfig",
    "ExecutorConfigError",
    "HttpConfig",
    "OutboundConfig",
    "RetryConfig",
    "SmtpConfig",
    "load_executor_config",
]

_SECRET_REF = re.compile(r"^\s*\$\{(env|file):[^}]+\}\s*$")


class ExecutorConfigError(ConfigError):
    """executor.yaml is invalid; the message names file, line and field."""


def _duration_ms(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 10s, 5m)")
    if value in (0, "0", "0s", "0ms"):
        return 0
    if isinstance(value, str | int | float):
        try:
            return parse_duration_ms(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from None
    return value


#: A duration written as "500ms", "10s", "5m", or a number of seconds; stored in ms.
DurationMs = Annotated[int, BeforeValidator(_duration_ms), Field(gt=0)]
#: Like DurationMs but 0 is allowed (switches the feature off).
OptionalDurationMs = Annotated[int, BeforeValidator(_duration_ms), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RetryConfig(_Model):
    """Failed attempts are retried after backoff × multiplier^(n-1), capped at max_backoff."""

    max_attempts: int = Field(3, ge=1, le=100, description="attempts in all, the first included")
    backoff_ms: DurationMs = Field(1_000, alias="backoff")
    max_backoff_ms: DurationMs = Field(60_000, alias="max_backoff")
    multiplier: float = Field(2.0, ge=1.0, le=10.0)


class CommandConfig(_Model):
    """An allowlisted command: `name: [program, arg, "{slot}"]` or the long form with options."""

    argv: list[str] = Field(min_length=1)
    timeout_ms: DurationMs | None = Field(None, alias="timeout",
                                          description="at most the shell plugin's timeout")
    allow_option_values: bool = Field(False, description="let slot values start with '-'")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
    cwd: Path | None = None

    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"argv": data} if isinstance(data, list) else data

    @field_validator("argv")
    @classmethod
    def _template(cls, v: list[str]) -> list[str]:
        try:
            parse_argv_template(v)
        except ArgvError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def template(self) -> ArgvTemplate:
        """The parsed argv template."""
        return parse_argv_template(self.argv)


class SmtpConfig(_Model):
    """Where email actions are sent. Credentials only from env/file references."""

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS (required if true)")
    username: str | None = None
    password: SecretStr | None = Field(None, description="${env:NAME} or ${file:/path}; never inline")
    from_addr: str = Field("vigil@localhost", alias="from")
    timeout_ms: DurationMs = Field(30_000, alias="timeout")

    @field_validator("username", mode="before")
    @classmethod
    def _username_ref(cls, v: Any) -> Any:
        try:
            return resolve_secret_refs(v, where="smtp.username")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("password", mode="before")
    @classmethod
    def _password_ref(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not _SECRET_REF.match(v):
            raise ValueError("give the password as ${env:NAME} or ${file:/path}: secrets never sit in the file")
        try:
            return resolve_secret_refs(v, where="smtp.password")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


    @model_validator(mode="after")
    def _credentials_paired(self) -> SmtpConfig:
        if self.username and self.password is None:
            raise ValueError("username is set but password is not (give password: ${env:NAME} or ${file:/path})")
        return self


class HttpConfig(_Model):
    """Limits of the http plugin (a request may ask for a shorter timeout in its params)."""

    timeout_ms: DurationMs = Field(10_000, alias="timeout", description="when the action gives none")
    max_timeout_ms: DurationMs = Field(60_000, alias="max_timeout")
    max_redirects: int = Field(5, ge=0, le=20, description="redirects followed, each judged by outbound (0: none)")


class ExecutorConfig(_Model):
    """The whole executor.yaml."""

    concurrency: int = Field(8, ge=1, le=1000, description="actions running at once")
    per_target_concurrency: int = Field(1, ge=1, le=1000,
                                        description="1: a target's actions run one at a time, in order")
    splay_ms: OptionalDurationMs = Field(0, alias="splay", description="random delay 0..splay before each action")
    batch_size: int = Field(50, ge=1, le=10_000, description="actions taken per poll")
    timeout_ms: DurationMs = Field(30_000, alias="timeout", description="time limit of one attempt")
    plugin_timeouts_ms: dict[str, DurationMs] = Field(default_factory=dict, alias="plugin_timeouts")
    retries: RetryConfig = Field(default_factory=RetryConfig)
    max_output_bytes: int = Field(4096, ge=64, le=1_000_000, description="output/error kept per result")
    ledger_retention_ms: DurationMs = Field(7 * 86_400_000, alias="ledger_retention",
                                            description="how long an action id is remembered")
    require_signature: bool = Field(False, description="refuse to start without a signing key")
    commands: dict[str, CommandConfig] = Field(default_factory=dict)
    smtp: SmtpConfig | None = None
    http: HttpConfig = Field(default_factory=HttpConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig,
                                     description="where plugins may connect (default: public http/https)")
    plugins: list[str] = Field(default_factory=list, description="plugin modules with @action functions")
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig,
                                               description="runbooks and rolls (app.orchestration.config)")
    plugin_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("commands", mode="before")
    @classmethod
    def _commands(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name in v:
                if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
                    raise ValueError(f"command name {name!r}: use letters, digits, '.', '-' and '_'")
            return {k: CommandConfig._short_form(c) for k, c in v.items()}
        return v

    @field_validator("plugins", mode="before")
    @classmethod
    def _plugins(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def timeout_s(self, plugin: str) -> float:
        """Time limit of one attempt of `plugin`."""
        return self.plugin_timeouts_ms.get(plugin, self.timeout_ms) / 1000


def load_executor_config(path: Path | str | None) -> ExecutorConfig:
    """Read and validate executor.yaml; None means every default. Raises ExecutorConfigError."""
    return load_yaml_model(path, ExecutorConfig, error=ExecutorConfigError, what="executor config")
