"""Bridge settings: where to listen, how much to accept, and the secrets that guard the endpoints.

Read from the environment by `load_bridge_config` (CLI flags override):
    VIGIL_API_TOKEN                 bearer token for the HTTP endpoints (unset: no token needed), or
    VIGIL_API_TOKEN_FILE            a file holding it (app.api_token)
    VIGIL_API_METRICS_OPEN          true: /metrics needs no token even when one is set
    VIGIL_GITHUB_SECRET             GitHub webhook secret, or
    VIGIL_GITHUB_SECRET_FILE        a file holding it (for mounted Kubernetes secrets)
    VIGIL_BRIDGE_HTTP_LISTEN        HOST:PORT (default 0.0.0.0:8080)
    VIGIL_BRIDGE_SYSLOG_LISTEN      comma-separated udp://HOST:PORT / tcp://HOST:PORT / tls://HOST:PORT
    VIGIL_BRIDGE_SYSLOG_TLS_CERT    tls://: the bridge's certificate (chain), PEM
    VIGIL_BRIDGE_SYSLOG_TLS_KEY     tls://: its private key, PEM
    VIGIL_BRIDGE_SYSLOG_TLS_CLIENT_CA  tls://: CA bundle client certificates must be signed by
                                    (set: clients without one are refused; unset: none asked for)
    VIGIL_BRIDGE_MAX_BODY_BYTES     HTTP body limit (default 1 MiB)
    VIGIL_BRIDGE_MAX_SYSLOG_BYTES   syslog message/frame limit (default 64 KiB)
    VIGIL_BRIDGE_DELIVERY_TIMEOUT_S how long an HTTP request waits for Kafka's acks (default 15)
    VIGIL_BRIDGE_DEDUP_WINDOW_S     how long a delivery key (Idempotency-Key, X-GitHub-Delivery, an
                                    Alertmanager group's state) is remembered (default 86400; 0: off)
    VIGIL_BRIDGE_DEDUP_LEASE_S      a claim of a delivery whose bridge died lapses after this (default 60)
Dead letters are rate-limited by the process settings' `dlq_*` (VIGIL_DLQ_*, app.dead_letter_limit),
which the `vigil bridge` commands pass in as `dead_letters`.
A secret may also be given as `${env:NAME}` or `${file:/path}`, as everywhere in Vigil's config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from app.api_token import load_api_token, metrics_open
from app.bridges.tls import TlsFiles
from app.config import ConfigError, resolve_secret_refs
from app.dead_letter_limit import DeadLetterLimits
from app.net import url_of

__all__ = [
    "ENDPOINTS",
    "SYSLOG_SCHEMES",
    "BridgeConfig",
    "ListenAddress",
    "load_bridge_config",
    "parse_listen",
]

#: The HTTP bridge's endpoints by short name (used in config, metrics labels and logs).
ENDPOINTS = ("events", "alertmanager", "github", "nagios", "puppet")
#: Syslog transports: UDP (RFC 5426), TCP (RFC 6587), TLS (RFC 5425, same framing as TCP).
SYSLOG_SCHEMES = ("udp", "tcp", "tls")
_LISTEN = re.compile(r"^(?:(?P<scheme>[a-z]+)://)?(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class ListenAddress:
    """A parsed `[scheme://]HOST:PORT` (IPv6 hosts in brackets)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return url_of(self.scheme, self.host, self.port)


def parse_listen(value: str, *, schemes: tuple[str, ...], default_scheme: str | None = None) -> ListenAddress:
    """Parse a listen address; ValueError (with the accepted forms) if it is not one."""
    forms = " or ".join(f"{s}://HOST:PORT" for s in schemes)
    if default_scheme:
        forms = f"HOST:PORT or {forms}"
    match = _LISTEN.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a listen address (use {forms})")
    scheme = match.group("scheme") or default_scheme
    if scheme not in schemes:
        raise ValueError(f"{value!r}: scheme must be one of {', '.join(schemes)} (use {forms})")
    port = int(match.group("port"))
    if port > 65535:
        raise ValueError(f"{value!r}: port {port} is out of range (0-65535; 0 picks a free port)")
    return ListenAddress(scheme=scheme, host=match.group("ip6") or match.group("host"), port=port)


class BridgeConfig(BaseModel):
    """Settings of `vigil bridge http` and `vigil bridge syslog`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http_listen: str = Field("0.0.0.0:8080", description="HTTP bridge address, HOST:PORT")
    syslog_listen: list[str] = Field(
        default_factory=lambda: ["udp://0.0.0.0:5514", "tcp://0.0.0.0:5514"],
        description="syslog addresses, udp://HOST:PORT, tcp://HOST:PORT and/or tls://HOST:PORT (514 needs root)",
    )
    syslog_tls_cert: Path | None = Field(None, description="tls://: the bridge's certificate (chain), PEM")
    syslog_tls_key: Path | None = Field(None, description="tls://: its private key, PEM")
    syslog_tls_client_ca: Path | None = Field(None, description="tls://: require client certificates of this CA")
    max_body_bytes: int = Field(1_048_576, gt=0, description="largest HTTP body accepted")
    max_syslog_bytes: int = Field(65_536, gt=0, le=16_777_216, description="largest syslog message or frame")
    delivery_timeout_s: float = Field(15.0, gt=0, le=600,
                                      description="HTTP: wait this long for Kafka to acknowledge a request's events")
    retry_after_s: int = Field(5, ge=1, le=3600,
                               description="HTTP: the Retry-After of a 503 (Kafka or the schema registry unavailable)")
    syslog_retry_max_events: int = Field(
        20_000, gt=0, le=10_000_000,
        description="syslog: events kept in memory for retry while Kafka or the registry cannot take them "
                    "(beyond it the oldest are dropped, counted)")
    dedup_window_s: float = Field(
        86_400.0, ge=0, le=30 * 86_400,
        description="HTTP: deliveries (Idempotency-Key, X-GitHub-Delivery, Alertmanager groups) accepted within "
                    "this long are answered as duplicates without producing again (0: off)")
    dedup_lease_s: float | None = Field(
        None, gt=0, le=3600,
        description="HTTP: a delivery claimed by a request that never finished (its bridge died) may be produced "
                    "by a retry after this long; more than delivery_timeout_s (default: the larger of 60 and "
                    "twice delivery_timeout_s)")
    dead_letters: DeadLetterLimits = Field(default_factory=DeadLetterLimits,
                                           description="dead letters written per (source, reason), then summarised")
    api_token: SecretStr | None = Field(None, description="bearer token required by the endpoints below")
    token_endpoints: frozenset[str] = Field(
        frozenset({"events", "alertmanager", "nagios", "puppet"}),
        description="endpoints that need the token when one is set (github is signed instead)",
    )
    metrics_open: bool = Field(False, description="/metrics needs no token even when one is set")
    github_secret: SecretStr | None = Field(None, description="GitHub webhook secret (X-Hub-Signature-256)")

    @field_validator("http_listen")
    @classmethod
    def _check_http_listen(cls, v: str) -> str:
        parse_listen(v, schemes=("http",), default_scheme="http")
        return v

    @field_validator("syslog_listen")
    @classmethod
    def _check_syslog_listen(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
        for item in v:
            parse_listen(item, schemes=SYSLOG_SCHEMES)
        return v

    @model_validator(mode="after")
    def _tls_files(self) -> BridgeConfig:
        tls = any(a.scheme == "tls" for a in self.syslog_addresses)
        if tls and (self.syslog_tls_cert is None or self.syslog_tls_key is None):
            raise ValueError("a tls:// syslog listener needs a certificate and key: set "
                             "VIGIL_BRIDGE_SYSLOG_TLS_CERT and VIGIL_BRIDGE_SYSLOG_TLS_KEY (or --tls-cert/--tls-key)")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_delivery(self) -> BridgeConfig:
        if self.dedup_lease_s is not None and self.dedup_lease_s <= self.delivery_timeout_s:
            raise ValueError(f"dedup_lease_s ({self.dedup_lease_s:g}) must be more than delivery_timeout_s "
                             f"({self.delivery_timeout_s:g}): a claim must outlast the request that holds it")
        return self

    @field_validator("token_endpoints")
    @classmethod
    def _check_endpoints(cls, v: frozenset[str]) -> frozenset[str]:
        unknown = sorted(set(v) - set(ENDPOINTS))
        if unknown:
            raise ValueError(f"unknown endpoint(s) {', '.join(unknown)} (known: {', '.join(ENDPOINTS)})")
        return v

    @property
    def http_address(self) -> ListenAddress:
        """`http_listen` parsed."""
        return parse_listen(self.http_listen, schemes=("http",), default_scheme="http")

    @property
    def syslog_addresses(self) -> list[ListenAddress]:
        """`syslog_listen` parsed."""
        return [parse_listen(item, schemes=SYSLOG_SCHEMES) for item in self.syslog_listen]

    @property
    def syslog_tls(self) -> TlsFiles | None:
        """The TLS files of tls:// listeners (None when no certificate is configured)."""
        if self.syslog_tls_cert is None or self.syslog_tls_key is None:
            return None
        return TlsFiles(cert=self.syslog_tls_cert, key=self.syslog_tls_key, client_ca=self.syslog_tls_client_ca)

    @property
    def dedup_lease(self) -> float:
        """`dedup_lease_s`, or its default: the larger of 60 s and twice the delivery timeout."""
        return self.dedup_lease_s if self.dedup_lease_s is not None else max(60.0, 2 * self.delivery_timeout_s)

    def token_bytes(self) -> bytes | None:
        """The API token, or None when endpoints are open."""
        return _secret_bytes(self.api_token)

    def github_secret_bytes(self) -> bytes | None:
        """The GitHub webhook secret, or None when signatures are not checked."""
        return _secret_bytes(self.github_secret)


def _secret_bytes(secret: SecretStr | None) -> bytes | None:
    if secret is None or not secret.get_secret_value():
        return None
    return secret.get_secret_value().encode("utf-8")


def load_bridge_config(env: Mapping[str, str] | None = None, **overrides: Any) -> BridgeConfig:
    """BridgeConfig from the environment plus explicit overrides (None = not given); ConfigError if bad."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    simple = {
        "VIGIL_BRIDGE_HTTP_LISTEN": "http_listen",
        "VIGIL_BRIDGE_MAX_BODY_BYTES": "max_body_bytes",
        "VIGIL_BRIDGE_MAX_SYSLOG_BYTES": "max_syslog_bytes",
        "VIGIL_BRIDGE_DELIVERY_TIMEOUT_S": "delivery_timeout_s",
        "VIGIL_BRIDGE_RETRY_AFTER_S": "retry_after_s",
        "VIGIL_BRIDGE_SYSLOG_RETRY_MAX_EVENTS": "syslog_retry_max_events",
        "VIGIL_BRIDGE_DEDUP_WINDOW_S": "dedup_window_s",
        "VIGIL_BRIDGE_DEDUP_LEASE_S": "dedup_lease_s",
        "VIGIL_BRIDGE_SYSLOG_TLS_CERT": "syslog_tls_cert",
        "VIGIL_BRIDGE_SYSLOG_TLS_KEY": "syslog_tls_key",
        "VIGIL_BRIDGE_SYSLOG_TLS_CLIENT_CA": "syslog_tls_client_ca",
    }
    for name, key in simple.items():
        if env.get(name):
            values[key] = env[name]
    token = load_api_token(env)
    if token is not None:
        values["api_token"] = token.decode("utf-8", "replace")
    values["metrics_open"] = metrics_open(env)
    if env.get("VIGIL_BRIDGE_SYSLOG_LISTEN"):
        values["syslog_listen"] = [p.strip() for p in env["VIGIL_BRIDGE_SYSLOG_LISTEN"].split(",") if p.strip()]
    if env.get("VIGIL_GITHUB_SECRET") and env.get("VIGIL_GITHUB_SECRET_FILE"):
        raise ConfigError("set VIGIL_GITHUB_SECRET or VIGIL_GITHUB_SECRET_FILE, not both")
    if env.get("VIGIL_GITHUB_SECRET"):
        values["github_secret"] = env["VIGIL_GITHUB_SECRET"]
    elif env.get("VIGIL_GITHUB_SECRET_FILE"):
        path = Path(env["VIGIL_GITHUB_SECRET_FILE"])
        try:
            values["github_secret"] = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"VIGIL_GITHUB_SECRET_FILE: cannot read {path}: {exc.strerror}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("api_token", "github_secret"):
        if isinstance(values.get(key), str):
            values[key] = resolve_secret_refs(values[key], where=key)
    try:
        return BridgeConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'bridge config'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors())
        raise ConfigError(f"invalid bridge configuration: {problems}") from exc
