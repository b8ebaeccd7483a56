"""The Confluent Schema Registry REST API as aiohttp handlers over a SchemaStore.

Handlers are thin: parse the request, call a pure function from operations.py / registration.py
through the store (in a thread pool, because the store blocks on Kafka), and render JSON the way
Confluent does. Every failure becomes a Confluent error body {"error_code", "message"}; nothing a
client sends can take the server down.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.registration import plan_register
from app.registry.schema_request import SUPPORTED_TYPES, SchemaRequest, parse_version
from app.registry.state import RegistryState, SubjectVersion
from app.registry.store import SchemaStore

__all__ = ["CONTENT_TYPE", "make_app"]

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


def _flag(request: web.Request, *names: str) -> bool:
    # Clients send true/True/1 (confluent-kafka formats Python bools as "True"); some parameters
    # have two spellings (deleted_only / deletedOnly).
    return any(request.query.get(name, "false").strip().lower() in ("true", "1", "yes") for name in names)


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
    if any(unicodedata.category(ch) == "Cc" for ch in subject):
        raise ApiError(422, 42208, f"The subject name {subject!r} contains control characters")
    return subject


def _schema_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    try:
        return int(raw)
    except ValueError:
        raise ApiError.schema_not_found(f"Schema id must be an integer, got {raw!r}") from None


def _version(request: web.Request) -> int | str:
    return parse_version(request.match_info["version"])


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


def _contract_fields(sv: SubjectVersion, body: dict[str, Any]) -> dict[str, Any]:
    if sv.references:
        body["references"] = [ref.body() for ref in sv.references]
    if sv.metadata is not None:
        body["metadata"] = sv.metadata
    if sv.rule_set is not None:
        body["ruleSet"] = sv.rule_set
    return body


def _version_body(sv: SubjectVersion) -> dict[str, Any]:
    return _contract_fields(sv, {"subject": sv.subject, "version": sv.version, "id": sv.schema_id,
                                 "schemaType": sv.schema_type, "schema": sv.schema})


async def _read(request: web.Request, query: Callable[[RegistryState], T]) -> T:
    store = request.app[_STORE_KEY]
    return await asyncio.get_running_loop().run_in_executor(request.app[_POOL_KEY], store.read, query)


async def _write(request: web.Request, plan: ops.Plan[T]) -> T:
    store = request.app[_STORE_KEY]
    return await asyncio.get_running_loop().run_in_executor(request.app[_POOL_KEY], store.write, plan)


# -- subjects and versions ---------------------------------------------------------------------
async def root(request: web.Request) -> web.Response:
    """GET / -> {} (liveness)."""
    return _reply({})


async def subjects(request: web.Request) -> web.Response:
    """GET /subjects[?deleted&deletedOnly&subjectPrefix&offset&limit] -> [subject]."""
    prefix = request.query.get("subjectPrefix") or request.query.get("subject") or ""
    names = await _read(request, partial(ops.list_subjects, deleted=_flag(request, "deleted"),
                                         deleted_only=_flag(request, "deleted_only", "deletedOnly"), prefix=prefix))
    return _reply(_page(request, names))


async def subject_versions(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions[?deleted&deletedOnly] -> [version]."""
    versions = await _read(request, partial(ops.list_versions, subject=_subject(request),
                                            deleted=_flag(request, "deleted"),
                                            deleted_only=_flag(request, "deleted_only", "deletedOnly")))
    return _reply(_page(request, versions))


async def subject_version(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v|latest}[?deleted] -> {subject, version, id, schemaType, schema, ...}."""
    sv = await _read(request, partial(ops.get_version, subject=_subject(request), version=_version(request),
                                      deleted=_flag(request, "deleted")))
    return _reply(_version_body(sv))


async def subject_version_schema(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v|latest}/schema -> the schema itself."""
    sv = await _read(request, partial(ops.get_version, subject=_subject(request), version=_version(request),
                                      deleted=_flag(request, "deleted")))
    return _raw_schema(sv.schema)


async def referenced_by(request: web.Request) -> web.Response:
    """GET /subjects/{s}/versions/{v}/referencedby -> [ids of the schemas referencing it]."""
    ids = await _read(request, partial(ops.referenced_by, subject=_subject(request), version=_version(request)))
    return _reply(_page(request, ids))


async def latest_with_metadata(request: web.Request) -> web.Response:
    """GET /subjects/{s}/metadata?key=K&value=V... -> the newest version with those metadata properties."""
    keys, values = request.query.getall("key", []), request.query.getall("value", [])
    if len(keys) != len(values):
        raise ApiError.bad_request(f"give as many value parameters as key parameters ({len(keys)} keys, "
                                   f"{len(values)} values)")
    sv = await _read(request, partial(ops.latest_with_metadata, subject=_subject(request),
                                      properties=dict(zip(keys, values, strict=True)),
                                      deleted=_flag(request, "deleted")))
    return _reply(_version_body(sv))


async def register(request: web.Request) -> web.Response:
    """POST /subjects/{s}/versions[?normalize] {schema, ...} -> {id, version, subject}; 409 if incompatible."""
    subject = _subject(request)
    schema = SchemaRequest.from_body(await _body(request))
    sv = await _write(request, plan_register(subject, schema, normalize=_flag(request, "normalize")))
    return _reply({"id": sv.schema_id, "version": sv.version, "subject": sv.subject})


async def lookup(request: web.Request) -> web.Response:
    """POST /subjects/{s}[?deleted&normalize] {schema} -> the version holding this schema."""
    subject = _subject(request)
    schema = SchemaRequest.from_body(await _body(request))
    sv = await _read(request, partial(ops.lookup, subject=subject, request=schema, deleted=_flag(request, "deleted")))
    return _reply(_version_body(sv))


async def delete_subject(request: web.Request) -> web.Response:
    """DELETE /subjects/{s}[?permanent=true] -> [deleted versions]."""
    plan = ops.plan_delete_subject(_subject(request), permanent=_flag(request, "permanent"))
    return _reply(await _write(request, plan))


async def delete_version(request: web.Request) -> web.Response:
    """DELETE /subjects/{s}/versions/{v}[?permanent=true] -> deleted version."""
    plan = ops.plan_delete_version(_subject(request), _version(request), permanent=_flag(request, "permanent"))
    return _reply(await _write(request, plan))


# -- schemas by id -----------------------------------------------------------------------------
async def schemas(request: web.Request) -> web.Response:
    """GET /schemas[?subjectPrefix&deleted&latestOnly&offset&limit] -> [{subject, version, id, schema, ...}]."""
    found = await _read(request, partial(ops.list_schemas, prefix=request.query.get("subjectPrefix") or "",
                                         deleted=_flag(request, "deleted"), latest_only=_flag(request, "latestOnly")))
    return _reply(_page(request, [_version_body(sv) for sv in found]))


def _by_id_with_max(state: RegistryState, schema_id: int) -> tuple[SubjectVersion, int]:
    return ops.schema_by_id(state, schema_id), state.max_id


async def schema_by_id(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id}[?fetchMaxId] -> {schema, schemaType[, references, metadata, ruleSet, maxId]}."""
    # ?subject= and ?format= (sent by confluent-kafka) change nothing for Avro without contexts.
    sv, max_id = await _read(request, partial(_by_id_with_max, schema_id=_schema_id(request)))
    body = _contract_fields(sv, {"schema": sv.schema, "schemaType": sv.schema_type})
    if _flag(request, "fetchMaxId"):
        body["maxId"] = max_id
    return _reply(body)


async def schema_by_id_raw(request: web.Request) -> web.Response:
    """GET /schemas/ids/{id}/schema -> the schema itself."""
    sv = await _read(request, partial(ops.schema_by_id, schema_id=_schema_id(request)))
    return _raw_schema(sv.schema)


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
    return _reply(list(SUPPORTED_TYPES))


async def compatibility(request: web.Request) -> web.Response:
    """POST /compatibility/subjects/{s}/versions[/{v}][?verbose] {schema} -> {is_compatible[, messages]}."""
    subject = _subject(request)
    version = parse_version(request.match_info["version"]) if "version" in request.match_info else None
    schema = SchemaRequest.from_body(await _body(request))
    ok, messages = await _read(request, partial(ops.check_compatibility, subject=subject, version=version,
                                                request=schema))
    body: dict[str, Any] = {"is_compatible": ok}
    if _flag(request, "verbose"):
        body["messages"] = messages
    return _reply(body)


# -- config and modes --------------------------------------------------------------------------
def _optional_subject(request: web.Request) -> str | None:
    return _subject(request) if "subject" in request.match_info else None


async def get_config(request: web.Request) -> web.Response:
    """GET /config[/{s}][?defaultToGlobal] -> {compatibilityLevel, ...the other fields set}."""
    config = await _read(request, partial(ops.get_config, subject=_optional_subject(request),
                                          default_to_global=_flag(request, "defaultToGlobal")))
    return _reply(config)


async def put_config(request: web.Request) -> web.Response:
    """PUT /config[/{s}] {compatibility, ...} -> what was set."""
    plan = ops.plan_set_config(_optional_subject(request), await _body(request))
    return _reply(await _write(request, plan))


async def delete_config(request: web.Request) -> web.Response:
    """DELETE /config[/{s}] -> the config that was in force."""
    return _reply(await _write(request, ops.plan_delete_config(_optional_subject(request))))


async def get_mode(request: web.Request) -> web.Response:
    """GET /mode[/{s}][?defaultToGlobal] -> {mode}; 40409 if the subject has no mode of its own."""
    mode = await _read(request, partial(ops.get_mode, subject=_optional_subject(request),
                                        default_to_global=_flag(request, "defaultToGlobal")))
    return _reply({"mode": mode})


async def put_mode(request: web.Request) -> web.Response:
    """PUT /mode[/{s}][?force] {mode} -> {mode}."""
    plan = ops.plan_set_mode(_optional_subject(request), await _body(request), force=_flag(request, "force"))
    return _reply({"mode": await _write(request, plan)})


async def delete_mode(request: web.Request) -> web.Response:
    """DELETE /mode[/{s}] -> {mode} that was set."""
    return _reply({"mode": await _write(request, ops.plan_delete_mode(_optional_subject(request)))})


# -- server ------------------------------------------------------------------------------------
async def contexts(request: web.Request) -> web.Response:
    """GET /contexts -> ["."] (the default context only)."""
    return _reply(_page(request, ["."]))


async def metadata_id(request: web.Request) -> web.Response:
    """GET /v1/metadata/id -> the Kafka cluster and registry this instance belongs to."""
    store = request.app[_STORE_KEY]
    return _reply({"id": "", "scope": {"path": [], "clusters": {"kafka-cluster": store.kafka_cluster_id,
                                                                "schema-registry-cluster": store.registry_id}}})


async def metadata_version(request: web.Request) -> web.Response:
    """GET /v1/metadata/version -> {version, commitId} of this server (Vigil's version)."""
    try:
        version = importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return _reply({"version": version, "commitId": ""})


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
    # Any character but "/" in a subject (braces too); clients URL-encode "/" as %2F.
    s = "/subjects/{subject:[^/]+}"
    routes = [
        ("GET", "/", root),
        ("GET", "/subjects", subjects),
        ("GET", f"{s}/versions", subject_versions),
        ("POST", f"{s}/versions", register),
        ("GET", f"{s}/versions/{{version}}", subject_version),
        ("DELETE", f"{s}/versions/{{version}}", delete_version),
        ("GET", f"{s}/versions/{{version}}/schema", subject_version_schema),
        ("GET", f"{s}/versions/{{version}}/referencedby", referenced_by),
        ("GET", f"{s}/metadata", latest_with_metadata),
        ("POST", s, lookup),
        ("DELETE", s, delete_subject),
        ("GET", "/schemas", schemas),
        ("GET", "/schemas/types", schema_types),
        ("GET", "/schemas/ids/{id}", schema_by_id),
        ("GET", "/schemas/ids/{id}/schema", schema_by_id_raw),
        ("GET", "/schemas/ids/{id}/versions", schema_versions),
        ("GET", "/schemas/ids/{id}/subjects", schema_subjects),
        ("POST", "/compatibility/subjects/{subject:[^/]+}/versions", compatibility),
        ("POST", "/compatibility/subjects/{subject:[^/]+}/versions/{version}", compatibility),
    ]
    for area, get, put, delete in (("config", get_config, put_config, delete_config),
                                   ("mode", get_mode, put_mode, delete_mode)):
        for path in (f"/{area}", f"/{area}/{{subject:[^/]+}}"):
            routes += [("GET", path, get), ("PUT", path, put), ("DELETE", path, delete)]
    routes += [
        ("GET", "/contexts", contexts),
        ("GET", "/v1/metadata/id", metadata_id),
        ("GET", "/v1/metadata/version", metadata_version),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
