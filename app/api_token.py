"""The bearer token of Vigil's HTTP endpoints (bridges' ingest, the worker's and the executor's
query routes and /metrics), and the commands that call them (`vigil status`, ...).

One source for servers and clients, so they cannot disagree about where the token comes from:
    VIGIL_API_TOKEN          the token itself
    VIGIL_API_TOKEN_FILE     a file holding it (surrounding whitespace is ignored; e.g. a mounted
                             Kubernetes secret)
    VIGIL_API_METRICS_OPEN   "true": /metrics needs no token even when one is set (for Prometheus
                             scraping by pod annotations, which cannot send one)
Neither token variable set means the endpoints are open; setting both is refused. /healthz never
needs the token: probes (kubelet, load balancers) do not send one, and it tells nothing secret.
Requests present it as `Authorization: Bearer <token>`; it is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from typing import Final

from app.config import ConfigError
from app.secret_env import load_secret

__all__ = [
    "METRICS_OPEN_ENV",
    "MIN_TOKEN_BYTES",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "ApiTokenError",
    "authorization_header",
    "is_authorized",
    "load_api_token",
    "metrics_open",
]

TOKEN_ENV: Final = "VIGIL_API_TOKEN"
TOKEN_FILE_ENV: Final = "VIGIL_API_TOKEN_FILE"
METRICS_OPEN_ENV: Final = "VIGIL_API_METRICS_OPEN"
#: A shorter token is guessable; 16 bytes is a floor (`openssl rand -hex 32` gives 64).
MIN_TOKEN_BYTES: Final = 16


class ApiTokenError(ConfigError):
    """The API token is configured but unusable; the message names the variable and what to do."""


def load_api_token(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The API token from the environment (see the module doc), or None when none is set.

    Raises ApiTokenError when both variables are set, the file cannot be read, or the token is
    shorter than MIN_TOKEN_BYTES."""
    return load_secret(TOKEN_ENV, TOKEN_FILE_ENV, what="API token", min_bytes=MIN_TOKEN_BYTES,
                       error=ApiTokenError, environ=environ)


def metrics_open(environ: Mapping[str, str] | None = None) -> bool:
    """Whether /metrics stays open when a token is set (VIGIL_API_METRICS_OPEN=true/1/yes)."""
    env = os.environ if environ is None else environ
    return env.get(METRICS_OPEN_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_authorized(authorization: str | None, token: bytes, *, allow_basic: bool = False) -> bool:
    """Whether an Authorization header value presents `token`: `Bearer <token>`, or with
    `allow_basic` HTTP Basic with the token as the password (for senders that only do Basic).
    Constant-time in the token's contents."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    presented = b""
    if scheme.lower() == "bearer":
        presented = credentials.strip().encode("utf-8", "replace")
    elif allow_basic and scheme.lower() == "basic":
        try:
            presented = base64.b64decode(credentials.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            presented = b""
    return bool(presented) and hmac.compare_digest(presented, token)


def authorization_header(token: bytes | None) -> dict[str, str]:
    """The header a client sends with `token` ({} without one)."""
    return {"Authorization": f"Bearer {token.decode('utf-8', 'replace')}"} if token else {}
