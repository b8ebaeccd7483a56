"""A small client for the Confluent Schema Registry REST API (ours, Confluent's, or any other).

Only standard endpoints are used, so every Vigil command works unchanged against a registry
Vigil did not write. Registry errors keep the registry's own error code and message.

A registry blip is not the caller's problem for long: idempotent calls (every GET, register,
lookup, compatibility checks, setting a level) are retried with full-jitter exponential backoff
on retriable failures (unreachable, 408, 429, 5xx; `RegistryError.is_retriable`), as
confluent-kafka's client does, until `retry_deadline_s` has passed; then the last failure is
raised. A 4xx is raised at once. Callers that must wait longer (a worker whose records need a
schema) catch a retriable RegistryError and retry at their own pace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from app.registry.errors import RegistryError, RegistryUnavailable
from app.retry import Backoff, RetryGaveUp, retry_call

__all__ = [
    "DEFAULT_RETRY_DEADLINE_S",
    "CompatibilityReport",
    "RegisteredSchema",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "is_retriable_registry_error",
    "retry_registry_call",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: How long a call keeps retrying a registry that is down or overloaded before it raises.
DEFAULT_RETRY_DEADLINE_S = 5.0
#: First and largest backoff ceilings between attempts (full jitter: each delay is uniform below).
_RETRY_INITIAL_S = 0.1
_RETRY_MAX_S = 1.0


def is_retriable_registry_error(exc: BaseException) -> bool:
    """A registry failure worth retrying: unreachable, 408, 429 or 5xx (not a 4xx answer)."""
    return isinstance(exc, RegistryError) and exc.is_retriable()


def retry_registry_call(fn: Callable[[], T], *, deadline_s: float | None, backoff: Backoff,
                        sleep: Callable[[float], None] = time.sleep,
                        on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """`fn()`, retried while it raises a retriable RegistryError, until `deadline_s` (None: for
    ever); then that last RegistryError is raised (not app.retry's RetryGaveUp: callers branch on
    `is_retriable()`). Any other error is raised at once."""
    try:
        return retry_call(fn, is_retriable=is_retriable_registry_error, deadline_s=deadline_s, backoff=backoff,
                          sleep=sleep, on_retry=on_retry)
    except RetryGaveUp as gave_up:
        last = gave_up.__cause__
        assert isinstance(last, RegistryError)  # only those are retried
        raise last from last.__cause__


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    id: int
    schema: str


@dataclass(frozen=True)
class CompatibilityReport:
    is_compatible: bool
    messages: list[str]


class RegistryClient:
    """Thread-safe, caching client. Implements the serde's SchemaSource protocol.

    `timeout_s` bounds one HTTP request; `retry_deadline_s` how long retriable failures of an
    idempotent call are retried (0: not at all), so a call against a dead registry gives up after
    about `retry_deadline_s` (plus one request's `timeout_s` when the registry hangs rather than
    refuses). `sleep` and `transport` (an httpx transport instead of the network) are for tests.
    """

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 10.0,
                 retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.retry_deadline_s = retry_deadline_s
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s, transport=transport,
                                  headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE})
        self._by_id: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> RegistryClient:
        """Client for the registry named in Settings (with basic auth if configured)."""
        auth = None
        if settings.schema_registry_user:
            pw = settings.schema_registry_password.get_secret_value() if settings.schema_registry_password else ""
            auth = (settings.schema_registry_user, pw)
        return cls(settings.schema_registry_url, auth=auth, retry_deadline_s=settings.schema_registry_retry_deadline_s)

    def close(self) -> None:
        self._http.close()

    # -- transport ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              retry: bool = True) -> Any:
        """One request; with `retry`, retriable failures are retried until `retry_deadline_s`."""
        if not retry or self.retry_deadline_s <= 0:
            return self._request(method, path, json, params)

        def on_retry(exc: BaseException, delay_s: float) -> None:
            log.debug("schema registry %s %s failed (%s); retrying in %.2fs", method, path, exc, delay_s)

        return retry_registry_call(lambda: self._request(method, path, json, params), deadline_s=self.retry_deadline_s,
                                   backoff=Backoff(_RETRY_INITIAL_S, _RETRY_MAX_S), sleep=self._sleep,
                                   on_retry=on_retry)

    def _request(self, method: str, path: str, json: Any, params: dict[str, Any] | None) -> Any:
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"cannot reach the schema registry at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
                code, msg = int(body.get("error_code", resp.status_code)), str(body.get("message", resp.text))
            except (ValueError, AttributeError):  # not JSON (a proxy's page), or JSON but not an object
                code, msg = resp.status_code, resp.text.strip() or resp.reason_phrase
            raise RegistryError(resp.status_code, code, msg)
        return resp.json() if resp.content else None

    # -- schemas ------------------------------------------------------------------------------
    def register(self, subject: str, schema: str) -> int:
        """Register (or find) a schema under a subject; returns its global id."""
        key = (subject, schema)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        schema_id = self._register(subject, schema)
        with self._lock:
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, schema)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        """Schema text for a global id (cached forever: ids are immutable). RegistryError 404/40403
        when no schema has this id."""
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        text = self._schema_by_id(schema_id)
        with self._lock:
            self._by_id[schema_id] = text
        return text

    def _register(self, subject: str, schema: str) -> int:
        """The registry's answer to a registration (uncached)."""
        return int(self._call("POST", f"/subjects/{_q(subject)}/versions", json={"schema": schema})["id"])

    def _schema_by_id(self, schema_id: int) -> str:
        """The registry's answer for a schema id (uncached)."""
        return str(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])

    def lookup(self, subject: str, schema: str) -> RegisteredSchema:
        """Find a schema already registered under a subject (RegistryError 40403 if not)."""
        body = self._call("POST", f"/subjects/{_q(subject)}", json={"schema": schema})
        return RegisteredSchema(body["subject"], int(body["version"]), int(body["id"]), body["schema"])

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        """One version of a subject (RegistryError 40401 no such subject, 40402 no such version)."""
        body = self._call("GET", f"/subjects/{_q(subject)}/versions/{version}")
        return RegisteredSchema(body["subject"], int(body["version"]), int(body["id"]), body["schema"])

    def subjects(self) -> list[str]:
        """Every live subject."""
        return list(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        """Live version numbers of a subject (RegistryError 40401 if none)."""
        return [int(v) for v in self._call("GET", f"/subjects/{_q(subject)}/versions")]

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete a subject (permanent: remove it for good); not retried (a repeat answers 40404)."""
        return list(self._call("DELETE", f"/subjects/{_q(subject)}", params={"permanent": str(permanent).lower()},
                               retry=False))

    # -- compatibility ------------------------------------------------------------------------
    def check_compatibility(self, subject: str, schema: str, version: int | str | None = None) -> CompatibilityReport:
        """Would this schema be accepted under the subject's compatibility level? With reasons.
        Without `version`, against what registration checks: the versions the level names (all of
        them under a *_TRANSITIVE level); with one ("latest", 3), against that version only."""
        path = f"/compatibility/subjects/{_q(subject)}/versions" + ("" if version is None else f"/{version}")
        body = self._call("POST", path, json={"schema": schema}, params={"verbose": "true"})
        return CompatibilityReport(bool(body.get("is_compatible")), [str(m) for m in body.get("messages") or []])

    def get_compatibility(self, subject: str | None = None) -> str:
        """The level of a subject (its own, else the global one), or the global level."""
        path = f"/config/{_q(subject)}" if subject else "/config"
        params = {"defaultToGlobal": "true"} if subject else None
        body = self._call("GET", path, params=params)
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        """Set the level of a subject, or the global level (idempotent, so retried)."""
        path = f"/config/{_q(subject)}" if subject else "/config"
        return str(self._call("PUT", path, json={"compatibility": level})["compatibility"])

    def ping(self) -> bool:
        """True when the registry answers now (one attempt, no retries)."""
        try:
            self._call("GET", "/subjects", retry=False)
        except RegistryError:
            return False
        return True


def _q(subject: str) -> str:
    return httpx.URL(path=subject).raw_path.decode().replace("/", "%2F")
