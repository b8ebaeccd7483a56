"""`vigil registry serve`: the Confluent Schema Registry REST API over a SchemaStore (aiohttp).

Handlers are thin: parse the request, call a pure function from operations.py through the store
(in a thread pool, because the store blocks on Kafka), and render JSON the way Confluent does.
Every failure becomes a Confluent error body {"error_code", "message"}; nothing a client sends
can take the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx
from aiohttp import web

from app.config import Settings
from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.state import RegistryState, SubjectVersion
from app.registry.store import SCHEMAS_TOPIC, KafkaSchemaStore, SchemaStore

__all__ = ["CONTENT_TYPE", "RegistryHandle", "make_app", "serve", "start_registry_in_thread"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_STORE_KEY = web.AppKey("store", SchemaStore)
_POOL_KEY = web.AppKey("pool", ThreadPoolExecutor)


# -- request helpers ---------------------------------------------------------------------------
def _reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type=CONTENT_TYPE)


def _raw_schema(text: str) -> web.Response:
    # The /schema endpoints return the schema itself as the body, not wrapped in an object.
    return web.Response(text=text, content_type=CONTENT_TYPE)


def _flag(request: web.Request, name: str) -> bool:
    # Clients send true/True/1 (confluent-kafka formats Python bools as "True").
    return request.query.get(name, "false").strip().lower() in ("true", "1", "yes")


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError.bad_request(f"query parameter {name} must be an integer, got {raw!r}") from None


def _page(request: web.Request, items: list[Any]) -> list[Any]:
    offset = max(0, _int_param(request, "offset", 0))
    limit = _int_param(request, "limit", -1)
    return items[offset:] if limit < 0 else items[offset:offset + limit]


def _subject(request: web.Request) -> str:
    subject = request.match_info["subject"]
    if not subject.strip():
        raise ApiError(422, 42208, "The subject name must not be empty")
    return subject


def _schema_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    try:
        return int(raw)
    except ValueError:
        raise ApiError.schema_not_found(f"Schema id must be an integer, got {raw!r}") from None


async def _body(request: web.Request) -> Any:
    try:
        text = (await request.read()).decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise ApiError.bad_request(f"the request body is not UTF-8 text: {exc}") from None
    if not text.strip():
        raise ApiError.bad_request("the request body is empty; expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError.bad_request(f"the request body is not valid JSON (line {exc.lineno}, "
                                   f"column {exc.colno}): {exc.msg}") from None


def _version_body(sv: SubjectVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": sv.subject, "version": sv.version, "id": sv.schema_id, "schema": sv.schema}
    if sv.schema_type != "AVRO":  # Confluent leaves schemaType out for AVRO
        body["schemaType"] = sv.schema_type
    return body


async def _read(request: web.Request, query: Callable[[RegistryState], T]) -> T:
    store = request.app[_STORE_KEY]
    return await asyncio.get_running_loop().run_in_executor(request.app[_POOL_KEY], store.read, query)


async def _write(request: web.Request, plan: ops.Plan[T]) -> T:
    store = request.app[_STORE_KEY]
    return await asyncio.get_running_loop().run_in_executor(request.app[_POOL_KEY], store.write, plan)


# -- handlers ----------------------------------------------------------------------------------
async def root(request: web.Request) -> web.Response:
    """GET / -> {} (liveness)."""
    return _reply({})


async def subjects(request: web.Request) -> web.Response:
    """GET /subjects[?deleted&deleted_only&subjectPrefix&offset&limit] -> [subject]."""
    prefix = request.query.get("subjectPrefix") or request.query.get("subject") or ""
    names = await _read(request, partial(ops.list_subjects, deleted=_flag(request, "deleted"),
                                         deleted_only=_flag(request, "deleted_only"), prefix=prefix))
    return _reply(_page(request, names))


async def subject_versions(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions[?deleted&deleted_only] -> [version]."""
    versions = await _read(request, partial(ops.list_versions, subject=_subject(request),
                                            deleted=_flag(request, "deleted"),
                                            deleted_only=_flag(request, "deleted_only")))
    return _reply(_page(request, versions))


async def subject_version(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v|latest}[?deleted] -> {subject, version, id, schema}."""
    version = ops.parse_version(request.match_info["version"])
    sv = await _read(request, partial(ops.get_version, subject=_subject(request), version=version,
                                      deleted=_flag(request, "deleted")))
    return _reply(_version_body(sv))


async def subject_version_schema(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v|latest}/schema -> the schema itself."""
    version = ops.parse_version(request.match_info["version"])
    sv = await _read(request, partial(ops.get_version, subject=_subject(request), version=version,
                                      deleted=_flag(request, "deleted")))
    return _raw_schema(sv.schema)


async def referenced_by(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v}/referencedby -> [] (references are not supported)."""
    # Without schema references nothing can refer to a version; answer [] once it exists.
    version = ops.parse_version(request.match_info["version"])
    await _read(request, partial(ops.get_version, subject=_subject(request), version=version))
    return _reply([])


async def register(request: web.Request) -> web.Response:
    """POST /subjects/{s}/versions {schema} -> {id, version, subject}; 409 if incompatible."""
    subject = _subject(request)
    schema = ops.SchemaRequest.from_body(await _body(request))
    sv = await _write(request, ops.plan_register(subject, schema))
    return _reply({"id": sv.schema_id, "version": sv.version, "subject": sv.subject})


async def lookup(request: web.Request) -> web.Response:
    """POST /subjects/{s}[?deleted] {schema} -> the version holding this schema."""
    subject = _subject(request)
    schema = ops.SchemaRequest.from_body(await _body(request))
    sv = await _read(request, partial(ops.lookup, subject=subject, request=schema,
                                      deleted=_flag(request, "deleted")))
    return _reply(_version_body(sv))


async def delete_subject(request: web.Request) -> web.Response:
    """DELETE /subjects/{s}[?permanent=true] -> [deleted versions]."""
    plan = ops.plan_delete_subject(_subject(request), permanent=_flag(request, "permanent"))
    return _reply(await _write(request, plan))


async def delete_version(request: web.Request) -> web.Response:
    """DELETE /subjects/{s}/versions/{v}[?permanent=true] -> deleted version."""
    version = ops.parse_version(request.match_info["version"])
    plan = ops.plan_delete_version(_subject(request), version, permanent=_flag(request, "permanent"))
    return _reply(await _write(request, plan))


async def schema_by_id(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id} -> {schema}."""
    # ?subject= and ?format= (sent by confluent-kafka) change nothing for Avro without contexts.
    text, schema_type = await _read(request, partial(ops.schema_by_id, schema_id=_schema_id(request)))
    body: dict[str, Any] = {"schema": text}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    return _reply(body)


async def schema_by_id_raw(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id}/schema -> the schema itself."""
    text, _ = await _read(request, partial(ops.schema_by_id, schema_id=_schema_id(request)))
    return _raw_schema(text)


def _uses_of(state: RegistryState, schema_id: int, deleted: bool) -> list[SubjectVersion]:
    ops.schema_by_id(state, schema_id)  # 40403 if unknown
    return state.uses(schema_id, deleted=deleted)


async def schema_versions(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id}/versions[?deleted] -> [{subject, version}]."""
    uses = await _read(request, partial(_uses_of, schema_id=_schema_id(request), deleted=_flag(request, "deleted")))
    return _reply(_page(request, [{"subject": sv.subject, "version": sv.version} for sv in uses]))


async def schema_subjects(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id}/subjects[?deleted] -> [subject]."""
    uses = await _read(request, partial(_uses_of, schema_id=_schema_id(request), deleted=_flag(request, "deleted")))
    return _reply(_page(request, sorted({sv.subject for sv in uses})))


async def schema_types(request: web.Request) -> web.Response:
    """GET /schemas/types -> ["AVRO"]."""
    return _reply(["AVRO"])


async def compatibility(request: web.Request) -> web.Response:
    """POST /compatibility/subjects/{s}/versions[/{v}][?verbose] {schema} -> {is_compatible[, messages]}."""
    subject = _subject(request)
    version = ops.parse_version(request.match_info.get("version", ops.LATEST))
    schema = ops.SchemaRequest.from_body(await _body(request))
    ok, messages = await _read(request, partial(ops.check_compatibility, subject=subject, version=version,
                                                request=schema))
    body: dict[str, Any] = {"is_compatible": ok}
    if _flag(request, "verbose"):
        body["messages"] = messages
    return _reply(body)


def _config_subject(request: web.Request) -> str | None:
    return _subject(request) if "subject" in request.match_info else None


async def get_config(request: web.Request) -> web.Response:
    """GET /config[/{s}][?defaultToGlobal] -> {compatibilityLevel}."""
    level = await _read(request, partial(ops.get_config, subject=_config_subject(request),
                                         default_to_global=_flag(request, "defaultToGlobal")))
    return _reply({"compatibilityLevel": level})


async def put_config(request: web.Request) -> web.Response:
    """PUT /config[/{s}] {compatibility} -> {compatibility}."""
    plan = ops.plan_set_config(_config_subject(request), await _body(request))
    return _reply({"compatibility": await _write(request, plan)})


async def delete_config(request: web.Request) -> web.Response:
    """DELETE /config[/{s}] -> {compatibilityLevel} that was in force."""
    return _reply({"compatibilityLevel": await _write(request, ops.plan_delete_config(_config_subject(request)))})


async def get_mode(request: web.Request) -> web.Response:
    """GET /mode[/{s}] -> {mode: READWRITE} (modes are not supported)."""
    return _reply({"mode": "READWRITE"})


async def contexts(request: web.Request) -> web.Response:
    """GET /contexts -> ["."] (the default context only)."""
    return _reply(["."])


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        return _reply(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"HTTP {exc.status} {exc.reason}"
        if exc.status in (404, 405):
            message += f": no {request.method} endpoint at {request.path}"
        return _reply({"error_code": exc.status, "message": message}, status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _reply({"error_code": 50001, "message": f"Internal error: {type(exc).__name__}: {exc}"}, status=500)


def make_app(store: SchemaStore, *, threads: int = 8) -> web.Application:
    """The aiohttp application serving the Confluent Schema Registry API from `store`."""
    app = web.Application(middlewares=[_errors])
    app[_STORE_KEY] = store
    app[_POOL_KEY] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="registry")

    async def _shutdown_pool(app: web.Application) -> None:
        app[_POOL_KEY].shutdown(wait=True, cancel_futures=True)

    app.on_cleanup.append(_shutdown_pool)
    s = "/subjects/{subject}"
    routes = [
        ("GET", "/", root),
        ("GET", "/subjects", subjects),
        ("GET", f"{s}/versions", subject_versions),
        ("POST", f"{s}/versions", register),
        ("GET", f"{s}/versions/{{version}}", subject_version),
        ("DELETE", f"{s}/versions/{{version}}", delete_version),
        ("GET", f"{s}/versions/{{version}}/schema", subject_version_schema),
        ("GET", f"{s}/versions/{{version}}/referencedby", referenced_by),
        ("POST", s, lookup),
        ("DELETE", s, delete_subject),
        ("GET", "/schemas/types", schema_types),
        ("GET", "/schemas/ids/{id}", schema_by_id),
        ("GET", "/schemas/ids/{id}/schema", schema_by_id_raw),
        ("GET", "/schemas/ids/{id}/versions", schema_versions),
        ("GET", "/schemas/ids/{id}/subjects", schema_subjects),
        ("POST", "/compatibility/subjects/{subject}/versions", compatibility),
        ("POST", "/compatibility/subjects/{subject}/versions/{version}", compatibility),
        ("GET", "/config", get_config),
        ("PUT", "/config", put_config),
        ("DELETE", "/config", delete_config),
        ("GET", "/config/{subject}", get_config),
        ("PUT", "/config/{subject}", put_config),
        ("DELETE", "/config/{subject}", delete_config),
        ("GET", "/mode", get_mode),
        ("GET", "/mode/{subject}", get_mode),
        ("GET", "/contexts", contexts),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


# -- running -----------------------------------------------------------------------------------
@dataclass
class _Running:
    """An app bound to a socket on some event loop; `stop` is set to shut it down."""

    runner: web.AppRunner
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])


async def _start(store: SchemaStore, host: str, port: int) -> _Running:
    runner = web.AppRunner(make_app(store), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return _Running(runner)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8081, *,
          store: SchemaStore | None = None, startup_timeout_s: float = 60.0) -> None:
    """Run the registry until SIGTERM or SIGINT (blocking). Raises StoreError if Kafka is unusable."""
    store = store or KafkaSchemaStore(settings, start_timeout_s=startup_timeout_s).start()

    async def main() -> None:
        running = await _start(store, host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, running.stop.set)
        log.info("schema registry listening on http://%s:%d (topic %s)", host, running.port,
                 settings.topic(SCHEMAS_TOPIC))
        try:
            await running.stop.wait()
        finally:
            await running.runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        store.close()


class RegistryHandle:
    """A registry running in a background thread: `.url`, `.stop()`."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, running: _Running, thread: threading.Thread,
                 store: SchemaStore) -> None:
        self.url = url
        self._loop = loop
        self._running = running
        self._thread = thread
        self._store = store

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop serving, then close the store (idempotent)."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._running.stop.set)
            self._thread.join(timeout_s)
        self._store.close()


def start_registry_in_thread(settings: Settings, *, host: str = "127.0.0.1", port: int = 0,
                             store: SchemaStore | None = None, timeout_s: float = 60.0) -> RegistryHandle:
    """Start a registry in a daemon thread; return once it answers HTTP. port=0 picks a free one."""
    store = store or KafkaSchemaStore(settings).start()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            try:
                running = await _start(store, host, port)
            except BaseException as exc:
                started["error"] = exc
                ready.set()
                raise
            started.update(loop=asyncio.get_running_loop(), running=running)
            ready.set()
            try:
                await running.stop.wait()
            finally:
                await running.runner.cleanup()

        with contextlib.suppress(Exception):  # a start failure is reported through `started`
            asyncio.run(main())

    thread = threading.Thread(target=run, name=f"registry-{host}:{port}", daemon=True)
    thread.start()
    if not ready.wait(timeout_s) or "error" in started:
        store.close()
        raise RuntimeError(f"schema registry did not start on {host}:{port}: {started.get('error', 'timed out')}")
    url = f"http://{host}:{started['running'].port}"
    handle = RegistryHandle(url, started["loop"], started["running"], thread, store)
    _wait_until_answers(url, timeout_s, handle)
    return handle


def _wait_until_answers(url: str, timeout_s: float, handle: RegistryHandle) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                if client.get(f"{url}/").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"schema registry at {url} did not answer within {timeout_s:.0f}s")
            time.sleep(0.05)
