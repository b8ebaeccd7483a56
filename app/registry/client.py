"""A small client for the Confluent Schema Registry REST API (ours, Confluent's, or any other).

Only standard endpoints are used, so every Vigil command works unchanged against a registry
Vigil did not write. Registry errors keep the registry's own error code and message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

from app.registry.errors import RegistryError, RegistryUnavailable

__all__ = ["CompatibilityReport", "RegisteredSchema", "RegistryClient", "RegistryError", "RegistryUnavailable"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


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
    """Thread-safe, caching client. Implements the serde's SchemaSource protocol."""

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s,
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
        return cls(settings.schema_registry_url, auth=auth)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"cannot reach the schema registry at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
                code, msg = int(body.get("error_code", resp.status_code)), str(body.get("message", resp.text))
            except ValueError:
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
        body = self._call("POST", f"/subjects/{_q(subject)}/versions", json={"schema": schema})
        schema_id = int(body["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        """Schema text for a global id (cached forever: ids are immutable)."""
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        body = self._call("GET", f"/schemas/ids/{schema_id}")
        with self._lock:
            self._by_id[schema_id] = body["schema"]
        return body["schema"]

    def lookup(self, subject: str, schema: str) -> RegisteredSchema:
        """Find a schema already registered under a subject (RegistryError 40403 if not)."""
        body = self._call("POST", f"/subjects/{_q(subject)}", json={"schema": schema})
        return RegisteredSchema(body["subject"], int(body["version"]), int(body["id"]), body["schema"])

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        body = self._call("GET", f"/subjects/{_q(subject)}/versions/{version}")
        return RegisteredSchema(body["subject"], int(body["version"]), int(body["id"]), body["schema"])

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        return [int(v) for v in self._call("GET", f"/subjects/{_q(subject)}/versions")]

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        return list(self._call("DELETE", f"/subjects/{_q(subject)}", params={"permanent": str(permanent).lower()}))

    # -- compatibility ------------------------------------------------------------------------
    def check_compatibility(self, subject: str, schema: str, version: int | str = "latest") -> CompatibilityReport:
        """Would this schema be accepted under the subject's compatibility level? With reasons."""
        body = self._call("POST", f"/compatibility/subjects/{_q(subject)}/versions/{version}",
                          json={"schema": schema}, params={"verbose": "true"})
        return CompatibilityReport(bool(body.get("is_compatible")), [str(m) for m in body.get("messages") or []])

    def get_compatibility(self, subject: str | None = None) -> str:
        path = f"/config/{_q(subject)}" if subject else "/config"
        params = {"defaultToGlobal": "true"} if subject else None
        body = self._call("GET", path, params=params)
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        path = f"/config/{_q(subject)}" if subject else "/config"
        return str(self._call("PUT", path, json={"compatibility": level})["compatibility"])

    def ping(self) -> bool:
        """True when the registry answers."""
        try:
            self._call("GET", "/subjects")
        except RegistryError:
            return False
        return True


def _q(subject: str) -> str:
    return httpx.URL(path=subject).raw_path.decode().replace("/", "%2F")
