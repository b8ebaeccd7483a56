"""An in-memory schema registry for tests: the real client's interface and errors, no HTTP.

Like confluent-kafka's MockSchemaRegistryClient it is a subclass of the real client: code under
test cannot tell them apart. Each call runs the registry server's own operations
(app.registry.operations) on an in-memory store, and a refusal becomes the RegistryError the real
client makes of the server's answer (same HTTP status, Confluent error code and message): an
unknown id is 404/40403, an unknown subject 40401, an incompatible schema 409. Ids and
registrations the client has answered once are cached as in the real client.

Outages: `fail_with(error)` makes every call that would reach the registry raise `error` (all of
them, or the next `times`) until `recover()`, so tests take the production error paths:

    registry = InMemorySchemaSource()
    registry.fail_with(RegistryUnavailable("registry down (test)"))
    ...   # the code under test sees what it sees when the registry is down
    registry.recover()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

from app.registry import operations as ops
from app.registry.client import CompatibilityReport, RegisteredSchema, RegistryClient
from app.registry.errors import ApiError, RegistryError
from app.registry.registration import plan_register
from app.registry.schema_request import SchemaRequest, parse_version
from app.registry.state import Record, RegistryState, SubjectVersion
from app.registry.store import InMemorySchemaStore

__all__ = ["InMemorySchemaSource"]

T = TypeVar("T")


class InMemorySchemaSource(RegistryClient):
    """A RegistryClient whose registry is in this process (ids assigned from 1, BACKWARD
    compatibility by default, as a fresh registry). `calls` counts calls that reached it. Several
    sources given the same `store` are clients (processes) of one registry, each with its cache."""

    def __init__(self, store: InMemorySchemaStore | None = None) -> None:
        # Nothing goes over HTTP; the transport says so if something tried (and spares the
        # default transport's TLS set-up, which costs more than a test's registry calls).
        super().__init__("http://in-memory.invalid", retry_deadline_s=0, transport=httpx.MockTransport(_no_http))
        self.url = "memory:"
        self.store = store or InMemorySchemaStore()
        self.calls = 0
        self._failure: RegistryError | None = None
        self._failures_left: int | None = None
        self._gate_lock = threading.Lock()

    # -- outages ------------------------------------------------------------------------------
    def fail_with(self, error: RegistryError, *, times: int | None = None) -> None:
        """Raise `error` from every call that reaches the registry (from the next `times` only, if
        given), as the real client does while the registry is down, overloaded or erring:
        `RegistryUnavailable(...)` for unreachable, `RegistryError(503, 50003, ...)` for a 5xx."""
        with self._gate_lock:
            self._failure, self._failures_left = error, times

    def recover(self) -> None:
        """The registry answers again."""
        with self._gate_lock:
            self._failure, self._failures_left = None, None

    @property
    def failing(self) -> bool:
        """Whether calls fail now."""
        with self._gate_lock:
            return self._failure is not None

    def _gate(self) -> None:
        with self._gate_lock:
            self.calls += 1
            failure = self._failure
            if failure is None:
                return
            if self._failures_left is not None:
                self._failures_left -= 1
                if self._failures_left <= 0:
                    self._failure, self._failures_left = None, None
        raise failure

    def _read(self, query: Callable[[RegistryState], T]) -> T:
        self._gate()
        try:
            return self.store.read(query)
        except ApiError as exc:
            raise RegistryError(exc.status, exc.error_code, exc.message) from None

    def _write(self, plan: Callable[[RegistryState], tuple[T, list[Record]]]) -> T:
        self._gate()
        try:
            return self.store.write(plan)
        except ApiError as exc:
            raise RegistryError(exc.status, exc.error_code, exc.message) from None

    # -- the client's calls, answered here ----------------------------------------------------
    def _register(self, subject: str, schema: str) -> int:
        request = _request(schema)
        return self._write(plan_register(subject, request)).schema_id

    def _schema_by_id(self, schema_id: int) -> str:
        return self._read(lambda state: ops.schema_by_id(state, schema_id)).schema

    def lookup(self, subject: str, schema: str) -> RegisteredSchema:
        request = _request(schema)
        return _registered(self._read(lambda state: ops.lookup(state, subject, request)))

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        wanted = _version(version)
        return _registered(self._read(lambda state: ops.get_version(state, subject, wanted)))

    def subjects(self) -> list[str]:
        return self._read(lambda state: ops.list_subjects(state))

    def versions(self, subject: str) -> list[int]:
        return self._read(lambda state: ops.list_versions(state, subject))

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        return self._write(ops.plan_delete_subject(subject, permanent=permanent))

    def check_compatibility(self, subject: str, schema: str, version: int | str | None = None) -> CompatibilityReport:
        request, wanted = _request(schema), None if version is None else _version(version)
        ok, messages = self._read(lambda state: ops.check_compatibility(state, subject, wanted, request))
        return CompatibilityReport(ok, list(messages))

    def get_compatibility(self, subject: str | None = None) -> str:
        config = self._read(lambda state: ops.get_config(state, subject or None, default_to_global=True))
        return str(config.get("compatibilityLevel") or config.get("compatibility"))

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        try:
            plan = ops.plan_set_config(subject or None, {"compatibility": level})
        except ApiError as exc:
            raise RegistryError(exc.status, exc.error_code, exc.message) from None
        return str(self._write(plan)["compatibility"])

    def ping(self) -> bool:
        try:
            self._gate()
        except RegistryError:
            return False
        return True


def _no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"InMemorySchemaSource sent an HTTP request: {request.method} {request.url}")


def _request(schema: str) -> SchemaRequest:
    """A register/lookup body, refused (42201) as the server refuses it."""
    try:
        return SchemaRequest.from_body({"schema": schema})
    except ApiError as exc:
        raise RegistryError(exc.status, exc.error_code, exc.message) from None


def _version(version: int | str) -> int | str:
    try:
        return parse_version(version)
    except ApiError as exc:
        raise RegistryError(exc.status, exc.error_code, exc.message) from None


def _registered(sv: SubjectVersion) -> RegisteredSchema:
    return RegisteredSchema(sv.subject, sv.version, sv.schema_id, sv.schema)

