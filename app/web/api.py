"""The HTTP API under /api/v1 (aiohttp handlers). Its contract is app.web.openapi (served at
/api/v1/openapi.json); the live stream is app.web.stream.

Errors are JSON for people: `{"error": what was wrong, "parameter": which one}` with 400 for a bad
parameter or body, 404 for an unknown id or path, 401 without a valid token, 503 when what the
answer needs (the workers, Kafka) does not answer now. Lists are paged and capped (`max_page`),
and every history query is bounded in time by the retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from app.api_token import is_authorized
from app.config import Settings
from app.durations import DurationError, parse_duration_ms
from app.members.model import HEARTBEAT, member_from_status
from app.model.ids import new_id
from app.pipeline.fetch import EventReader, FetchError
from app.rules.silences import Silence, SilenceError
from app.web.backtests import BacktestBusy, BacktestJobs, RulesRejected, deployed_rule_files
from app.web.config import UiConfig
from app.web.gates import GateService, get_gate, list_gates
from app.web.hub import LiveHub
from app.web.openapi import openapi_document, request_schema
from app.web.params import (
    ParamError,
    Query,
    bool_param,
    check_body,
    check_known,
    choice_param,
    int_param,
    limit_param,
    list_param,
    parse_time,
    present,
    tag_params,
    text_param,
    time_param,
    typed_param,
)
from app.web.silences import KafkaUnavailable, SilenceWriter
from app.web.statusindex import SORTS, STATES, StatusFilter, StatusIndex
from app.web.store import HistoryStore
from app.web.tracing import gather_trace
from app.web.workers import WorkersClient, WorkersError

__all__ = ["API_PREFIX", "CTX", "UiContext", "api_routes", "error_middleware", "json_response"]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
_PAGING: Final = ("offset", "page", "limit")
_STATUS_FILTERS: Final = ("subject", "name", "state", "tag", "flapping", "sort")
_RESULT_STATES: Final = ("PENDING", "SUPPRESSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "EXPIRED", "REJECTED",
                         "DUPLICATE")
_MAX_OFFSET: Final = 10_000_000
#: The newest data a query may ask for: events may be stamped a little ahead of the clock.
_FUTURE_MS: Final = 300_000


@dataclass
class UiContext:
    """What the handlers need, built by app.web.server."""

    settings: Settings
    config: UiConfig
    hub: LiveHub
    store: HistoryStore
    workers: WorkersClient
    backtests: BacktestJobs
    silences: SilenceWriter
    window_sizes_ms: tuple[int, ...]
    worker_window_retention_ms: int
    rules_dir: Path
    gates: GateService | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    _events: EventReader | None = None

    def events(self) -> EventReader:
        if self._events is None:
            self._events = EventReader(self.settings)
        return self._events

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


CTX: Final = web.AppKey("vigil_ui", UiContext)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (orjson: the board's pages are large)."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type="application/json", headers=headers)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Every error of the API as a JSON body (unknown paths and methods too)."""
    try:
        return await handler(request)
    except ParamError as exc:
        return _error(400, str(exc), parameter=exc.parameter)
    except WorkersError as exc:
        return _error(503, f"the workers' query API does not answer: {exc}")
    except KafkaUnavailable as exc:
        return _error(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            reason = f"no such path: {request.path}"
        elif exc.status == 405:
            reason = f"{request.method} is not allowed on {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        return json_response({"error": reason}, status=exc.status, headers=headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("ui: %s %s failed", request.method, request.path)
        return _error(500, "internal error (logged by the server)")


def auth_middleware(config: UiConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer token: required for every mutating call when a token is set, and for reads of the API
    when `auth_reads` is on (the stream also takes it as `access_token`: EventSource sends no headers)."""
    token = config.token_text()

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if token is None or not request.path.startswith("/api/"):
            return await handler(request)
        mutating = request.method not in ("GET", "HEAD", "OPTIONS")
        if request.path == f"{API_PREFIX}/openapi.json" and not mutating:
            return await handler(request)
        if mutating or config.auth_reads:
            given = request.headers.get("Authorization")
            if not given and request.path == f"{API_PREFIX}/stream" and request.query.get("access_token"):
                given = f"Bearer {request.query['access_token']}"
            if not is_authorized(given, token.encode()):
                what = "changes" if mutating else "reads"
                return json_response({"error": f"a valid token is required for {what}: send "
                                               "'Authorization: Bearer <token>'"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="vigil"'})
        return await handler(request)

    return check


# -- status ---------------------------------------------------------------------------------------------
def _status_filter(q: Query) -> StatusFilter:
    states = [s.upper() for s in list_param(q, "state")]
    for state in states:
        if state not in STATES:
            raise ParamError("state", f"{state!r}: use one of {', '.join(STATES)}")
    flapping = bool_param(q, "flapping") if present(q, "flapping") else None
    return StatusFilter(subject=text_param(q, "subject", "*") or "*", name=text_param(q, "name", "*") or "*",
                        states=frozenset(states), tags=tag_params(q), flapping=flapping)


def _sort(q: Query) -> str:
    sort = typed_param(q, "sort") or "subject"
    if sort.lstrip("-") not in SORTS:
        raise ParamError("sort", f"{sort!r}: sort by {', '.join(SORTS)} (a leading - reverses)")
    return sort


def _page(q: Query, cap: int, default: int = 100) -> tuple[int, int]:
    limit = limit_param(q, default=default, cap=cap)
    offset = int_param(q, "offset", 0, minimum=0, maximum=_MAX_OFFSET)
    if present(q, "page"):  # a page number wins over an offset
        page = int_param(q, "page", 1, minimum=1, maximum=_MAX_OFFSET)
        return min((page - 1) * limit, _MAX_OFFSET), limit
    return offset, limit


async def get_status(request: web.Request) -> web.Response:
    """GET /status: a filtered, sorted page of the status of every identity."""
    ctx, q = request.app[CTX], request.query
    check_known(q, (*_STATUS_FILTERS, *_PAGING, "source"))
    flt, sort = _status_filter(q), _sort(q)
    offset, limit = _page(q, ctx.config.max_page)
    source = choice_param(q, "source", ("index", "workers"), "index")
    index = ctx.hub.index
    if source == "workers":
        index = await _workers_index(ctx, flt)
    page = index.query(flt, sort=sort, offset=offset, limit=limit)
    return json_response({**page.to_json(), "source": source, "ready": ctx.hub.ready})


async def _workers_index(ctx: UiContext, flt: StatusFilter) -> StatusIndex:
    """The workers' current statuses (fresh last_seen, counts and text) as an index of their own."""
    one_state = next(iter(flt.states)) if len(flt.states) == 1 else None
    found, _missing = await ctx.workers.statuses(subject=flt.subject, name=flt.name, state=one_state)
    index = StatusIndex()
    for record in found:
        index.apply(str(record["subject"]), str(record["name"]), record, 0)
    return index


async def get_status_groups(request: web.Request) -> web.Response:
    """GET /status/groups: the grouped board, as lines (a group's header, then its identities)."""
    ctx, q = request.app[CTX], request.query
    check_known(q, (*_STATUS_FILTERS, *_PAGING, "group_by", "per_line", "group_order"))
    flt, sort = _status_filter(q), _sort(q)
    offset, limit = _page(q, ctx.config.max_page)
    group_by = typed_param(q, "group_by") or "subject"
    if group_by not in ("subject", "name") and not (group_by.startswith("tag:") and len(group_by) > 4):
        raise ParamError("group_by", f"{group_by!r}: group by subject, name or tag:KEY")
    per_line = int_param(q, "per_line", 1, minimum=1, maximum=500)
    group_order = choice_param(q, "group_order", ("group", "worst"), "group") or "group"
    index = ctx.hub.index
    lines, total_lines, groups = index.group_lines(flt, group_by=group_by, per_line=per_line, sort=sort,
                                                   group_order=group_order, offset=offset, limit=limit)
    counts = index.query(flt, limit=0)
    return json_response({"total_lines": total_lines, "groups": groups, "total": counts.total,
                          "counts": counts.counts, "flapping": counts.flapping, "offset": offset, "limit": limit,
                          "revision": index.revision, "ready": ctx.hub.ready,
                          "lines": [line.to_json() for line in lines]})


async def get_identity(request: web.Request) -> web.Response:
    """GET /status/{subject}/{name}: one identity's status, its current record from the workers, and
    its transitions (newest first)."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("limit", "since"))
    subject, name = request.match_info["subject"], request.match_info["name"]
    now = _now_ms()
    limit = limit_param(q, default=100, cap=ctx.config.max_page)
    since = max(time_param(q, "since", default=now - ctx.config.history_retention_ms, now_ms=now),
                now - ctx.config.history_retention_ms)
    row = ctx.hub.index.get(subject, name)
    current, missing = None, list(ctx.workers.urls)
    try:
        found, missing = await ctx.workers.statuses(subject=_glob_literal(subject), name=_glob_literal(name))
        current = next((s for s in found if s["subject"] == subject and s["name"] == name), None)
    except WorkersError:
        pass
    if row is None and current is None:
        return _error(404, f"no identity {subject}/{name} is known (no status was published for it)")
    transitions = await asyncio.to_thread(ctx.store.alerts, since_ms=since, until_ms=now + _FUTURE_MS,
                                          subject=_glob_literal(subject), name=_glob_literal(name), limit=limit)
    return json_response({"subject": subject, "name": name, "status": row.to_json() if row else None,
                          "current": current, "transitions": transitions, "missing": missing})


def _glob_literal(text: str) -> str:
    """A glob matching exactly `text` (its metacharacters bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


# -- events ---------------------------------------------------------------------------------------------
async def lookup_event(ctx: UiContext, event_id: str) -> dict[str, Any] | None:
    """An event by id (archive index, then Kafka), as EventReader.read answers; None when no worker
    indexes it. FetchError when the index names it but it cannot be read."""
    location = await ctx.workers.locate_event(event_id)
    if location is None:
        return None
    return await asyncio.to_thread(ctx.events().read, location)


async def get_event(request: web.Request) -> web.Response:
    """GET /events/{id}: one event by id."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    event_id = request.match_info["id"]
    try:
        found = await lookup_event(ctx, event_id)
    except FetchError as exc:
        status = 503 if "is Kafka reachable" in str(exc) else 404
        return _error(status, str(exc))
    if found is None:
        return _error(404, f"event {event_id} is not in the archive index")
    return json_response(found)


async def find_events(request: web.Request) -> web.Response:
    """GET /events: the archive index of matching identities in a time range, newest first."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("subject", "name", "since", "until", "limit", "records"))
    now = _now_ms()
    since = time_param(q, "since", default=now - 3_600_000, now_ms=now)
    until = time_param(q, "until", default=now + _FUTURE_MS, now_ms=now)
    with_records = bool_param(q, "records")
    limit = limit_param(q, default=100, cap=100 if with_records else ctx.config.max_page)
    found, missing = await ctx.workers.find_events(subject=text_param(q, "subject", "*") or "*",
                                                   name=text_param(q, "name", "*") or "*",
                                                   since_ms=since, until_ms=until, limit=limit)
    if with_records:
        reader = ctx.events()

        def read_all() -> None:
            for ref in found:
                try:
                    ref["record"] = reader.read(ref, timeout_s=5.0)["event"]
                except FetchError as exc:
                    ref["record"], ref["record_error"] = None, str(exc)

        await asyncio.to_thread(read_all)
    return json_response({"events": found, "since": since, "until": until, "limit": limit, "missing": missing})


# -- alerts, metrics, actions ---------------------------------------------------------------------------
def _history_range(q: Query, ctx: UiContext, *, default_span_ms: int, retention_ms: int) -> tuple[int, int]:
    """[since, until] clamped to the retention (never refused: older history is simply not kept; a
    range that ends before it starts holds nothing)."""
    now = _now_ms()
    until = time_param(q, "until", default=now + _FUTURE_MS, now_ms=now)
    since = time_param(q, "since", default=until - default_span_ms, now_ms=now)
    return max(since, now - retention_ms), until


async def get_alerts(request: web.Request) -> web.Response:
    """GET /alerts: alert history (every status transition), newest first."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("since", "until", "state", "subject", "name", "limit"))
    since, until = _history_range(q, ctx, default_span_ms=86_400_000, retention_ms=ctx.config.history_retention_ms)
    states = [s.upper() for s in list_param(q, "state")]
    for state in states:
        if state not in STATES:
            raise ParamError("state", f"{state!r}: use one of {', '.join(STATES)}")
    limit = limit_param(q, default=100, cap=ctx.config.max_page)
    alerts = await asyncio.to_thread(ctx.store.alerts, since_ms=since, until_ms=until,
                                     subject=text_param(q, "subject", "*") or "*",
                                     name=text_param(q, "name", "*") or "*", states=states, limit=limit)
    return json_response({"alerts": alerts, "since": since, "until": until, "limit": limit})


async def get_metrics(request: web.Request) -> web.Response:
    """GET /metrics: closed (and, from the workers, open) windows of one identity's metrics in a range."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("subject", "name", "metric", "window", "since", "until", "limit", "last"))
    subject, name = text_param(q, "subject"), text_param(q, "name")
    if subject is None:
        raise ParamError("subject", "required")
    if name is None:
        raise ParamError("name", "required")
    metric = text_param(q, "metric")
    size_ms = None
    window = typed_param(q, "window")
    if window is not None:
        try:
            size_ms = int(window) if window.isdigit() else parse_duration_ms(window)
        except DurationError as exc:
            raise ParamError("window", str(exc)) from None
        if size_ms not in ctx.window_sizes_ms:
            raise ParamError("window", f"{window}: the window sizes are "
                                       f"{', '.join(f'{s // 1000}s' for s in ctx.window_sizes_ms)}")
    now = _now_ms()
    retention = max(ctx.config.metrics_retention_ms, ctx.worker_window_retention_ms)
    since, until = _history_range(q, ctx, default_span_ms=3_600_000, retention_ms=retention)
    limit = limit_param(q, default=5000, cap=20_000)
    if present(q, "last"):
        # the workers' latest windows per size, as `vigil metrics --last N` has always shown them
        latest, absent = await ctx.workers.windows(subject=subject, name=name, metric=metric, size_ms=size_ms,
                                                   last=int_param(q, "last", 10, minimum=1, maximum=1000))
        return json_response({"subject": subject, "name": name, "since": None, "until": None,
                              "sizes": list(ctx.window_sizes_ms), "metrics": sorted({w["metric"] for w in latest}),
                              "windows": latest[:limit], "missing": absent})
    stored = await asyncio.to_thread(ctx.store.windows, subject=subject, name=name, metric=metric, size_ms=size_ms,
                                     since_ms=since, until_ms=until, limit=limit)
    merged = {(w["size_ms"], w["window_start"], w["metric"]): {**w, "closed": True} for w in stored}
    missing: list[str] = []
    if until >= now - ctx.worker_window_retention_ms:
        smallest = size_ms or min(ctx.window_sizes_ms)
        last = min(1000, (until - max(since, now - ctx.worker_window_retention_ms)) // smallest + 2)
        try:
            recent, missing = await ctx.workers.windows(subject=subject, name=name, metric=metric, size_ms=size_ms,
                                                        last=max(1, last))
        except WorkersError:
            recent, missing = [], list(ctx.workers.urls)
        for w in recent:
            if since <= w["window_start"] <= until:
                merged[(w["size_ms"], w["window_start"], w["metric"])] = w
    windows = [merged[k] for k in sorted(merged)][:limit]
    return json_response({"subject": subject, "name": name, "since": since, "until": until,
                          "sizes": list(ctx.window_sizes_ms), "metrics": sorted({w["metric"] for w in windows}),
                          "windows": windows, "missing": missing})


async def get_actions(request: web.Request) -> web.Response:
    """GET /actions: actions joined with their results (or the silence that suppressed them), newest first."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("rule", "target", "state", "suppressed", "since", "until", "limit"))
    since, until = _history_range(q, ctx, default_span_ms=86_400_000, retention_ms=ctx.config.history_retention_ms)
    states = [s.upper() for s in list_param(q, "state")]
    for state in states:
        if state not in _RESULT_STATES:
            raise ParamError("state", f"{state!r}: use one of {', '.join(_RESULT_STATES)}")
    suppressed = bool_param(q, "suppressed") if present(q, "suppressed") else None
    limit = limit_param(q, default=100, cap=ctx.config.max_page)
    rows = await asyncio.to_thread(ctx.store.actions, since_ms=since, until_ms=until,
                                   rule=text_param(q, "rule", "*") or "*", target=text_param(q, "target", "*") or "*",
                                   states=states, suppressed=suppressed, limit=limit)
    return json_response({"actions": [r.to_dict() for r in rows], "since": since, "until": until, "limit": limit})


# -- trace ----------------------------------------------------------------------------------------------
async def get_trace(request: web.Request) -> web.Response:
    """GET /trace/{id}: the chain around an event, alert, action or result id."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    target = request.match_info["id"]
    problems: list[str] = []

    async def lookup(event_id: str) -> dict[str, Any] | None:
        try:
            found = await lookup_event(ctx, event_id)
        except (FetchError, WorkersError) as exc:
            problems.append(str(exc))
            return None
        return found["event"] if found else None

    answer = await gather_trace(target, ctx.store, lookup)
    if answer is None:
        detail = f" ({'; '.join(problems)})" if problems else ""
        return _error(404, f"no event, alert, action or result with id {target} is known{detail}")
    deployed = await ctx.workers.rules()
    rules = [r for r in deployed["rules"] if r.get("name") in answer.rules]
    return json_response({"id": target, "trace_id": answer.trace_id, "tree": answer.tree, "alerts": answer.alerts,
                          "rules": rules, "events_missing": answer.events_missing, "problems": problems})


# -- silences -------------------------------------------------------------------------------------------
async def list_silences(request: web.Request) -> web.Response:
    """GET /silences: active silences (all=true: ended ones too)."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("all",))
    now = _now_ms()
    show_all = bool_param(q, "all")
    silences = [s.to_dict() | {"active": s.active(now)} for s in ctx.hub.silences.all() if show_all or s.active(now)]
    return json_response({"silences": silences, "loaded": ctx.hub.ready})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send a JSON body with Content-Type: application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ParamError("body", f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ParamError("body", "expected a JSON object")
    return body


def _body_text(body: dict[str, Any], name: str, *, required: bool = False, max_length: int = 2000) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ParamError(name, "required")
        return None
    if not isinstance(value, str):
        raise ParamError(name, "must be a string")
    if len(value) > max_length:
        raise ParamError(name, f"longer than {max_length} characters")
    if required and not value.strip():
        raise ParamError(name, "must not be empty")
    return value


async def add_silence(request: web.Request) -> web.Response:
    """POST /silences: start a silence now, for a duration, with a reason. `match` is a list of
    FIELD=GLOB (as `vigil silence add --match`)."""
    ctx = request.app[CTX]
    body = await _json_body(request)
    check_body(body, request_schema("/silences"))
    raw = body.get("match") or []
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise ParamError("match", "expected a list of FIELD=GLOB strings, e.g. [\"subject=web1\", \"tags.env=prod*\"]")
    if len(raw) > 20:
        raise ParamError("match", "at most 20 fields")
    match: dict[str, str] = {}
    for item in raw:
        key, sep, pattern = item.partition("=")
        if not sep or not key.strip() or not pattern:
            raise ParamError("match", f"{item!r}: expected FIELD=GLOB, e.g. subject=web1 or tags.env=prod*")
        match[key.strip()] = pattern
    reason = _body_text(body, "reason", required=True)
    rule = _body_text(body, "rule", max_length=200)
    duration = _body_text(body, "duration", required=True, max_length=64) or ""
    try:
        length_ms = parse_duration_ms(duration)
    except DurationError as exc:
        raise ParamError("duration", str(exc)) from None
    if length_ms > 366 * 86_400_000:
        raise ParamError("duration", "at most a year")
    now = _now_ms()
    try:
        silence = Silence(id=new_id(now), match=match, rule=rule, until_ms=now + length_ms, reason=reason or "",
                          created_ms=now)
    except SilenceError as exc:
        raise ParamError("match", str(exc)) from None
    await ctx.silences.write(silence)
    ctx.hub.silences.add(silence)
    return json_response(silence.to_dict() | {"active": True}, status=201)


async def expire_silence(request: web.Request) -> web.Response:
    """DELETE /silences/{id}: end a silence now (it stays listed, as ended, with all=true)."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    silence_id = request.match_info["id"]
    known = next((s for s in ctx.hub.silences.all() if s.id == silence_id), None)
    if known is None:
        return _error(404, f"no silence {silence_id}")
    now = _now_ms()
    ended = Silence(id=known.id, match=dict(known.match), rule=known.rule, until_ms=min(known.until_ms, now),
                    reason=known.reason, created_ms=known.created_ms)
    await ctx.silences.write(ended)
    ctx.hub.silences.add(ended)
    return json_response(ended.to_dict() | {"active": False})


# -- backtests ------------------------------------------------------------------------------------------
async def post_backtest(request: web.Request) -> web.Response:
    """POST /backtests: queue a backtest of a posted rule set (or the deployed one) over a range."""
    ctx = request.app[CTX]
    body = await _json_body(request)
    check_body(body, request_schema("/backtests"))
    now = _now_ms()
    times = {}
    for name, default in (("from", None), ("to", "now")):
        text = _body_text(body, name, required=default is None, max_length=64) or default
        try:
            times[name] = parse_time(str(text), now_ms=now)
        except ValueError as exc:
            raise ParamError(name, str(exc)) from None
    files = body.get("files")
    rules_text = _body_text(body, "rules", max_length=256 * 1024)
    if files is not None and rules_text is not None:
        raise ParamError("rules", "post files or rules, not both")
    if rules_text is not None:
        files = {"posted.yaml": rules_text}
    compare = body.get("compare", True)
    if not isinstance(compare, bool):
        raise ParamError("compare", "must be true or false")
    subject = _body_text(body, "subject", max_length=200)
    try:
        job = await asyncio.to_thread(ctx.backtests.submit, from_ms=times["from"], to_ms=times["to"], files=files,
                                      subject=subject, compare=compare)
    except RulesRejected as exc:
        return _error(400, str(exc), parameter="files", errors=exc.errors)
    except BacktestBusy as exc:
        return json_response({"error": str(exc)}, status=429, headers={"Retry-After": "10"})
    return json_response(job.to_json(), status=202, headers={"Location": f"{API_PREFIX}/backtests/{job.id}"})


async def get_backtest(request: web.Request) -> web.Response:
    """GET /backtests/{id}: a backtest's state, progress and, once done, its result."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    job = ctx.backtests.get(request.match_info["id"])
    if job is None:
        return _error(404, f"no backtest {request.match_info['id']} (finished ones are kept for a while)")
    return json_response(job.to_json())


async def list_backtests(request: web.Request) -> web.Response:
    """GET /backtests: recent backtests (without their results)."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    return json_response({"backtests": [j.to_json(with_result=False) for j in ctx.backtests.list()]})


async def get_deployed_rules(request: web.Request) -> web.Response:
    """GET /rules: the deployed rules (as the workers run them) and their files (to edit for a backtest)."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    deployed = await ctx.workers.rules()
    files = await asyncio.to_thread(deployed_rule_files, ctx.rules_dir)
    return json_response({"rules": deployed["rules"], "errors": deployed["errors"], "files": files,
                          "rules_dir": str(ctx.rules_dir)})


# -- gates ----------------------------------------------------------------------------------------------
def _gate_service(ctx: UiContext) -> GateService:
    if ctx.gates is None:
        raise web.HTTPNotImplemented(text="this server has no rules directory to read gates from")
    return ctx.gates


async def get_gates(request: web.Request) -> web.Response:
    """GET /gates: the gates defined beside the rules."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    return json_response(await list_gates(request, _gate_service(ctx)))


async def get_gate_decision(request: web.Request) -> web.Response:
    """GET /gates/{name}: the gate's decision now (recorded as an event unless record=false)."""
    ctx, q = request.app[CTX], request.query
    check_known(q, ("record",))
    record = bool_param(q, "record") if present(q, "record") else True
    name = request.match_info["name"]
    answer = await get_gate(name, _gate_service(ctx), ctx.hub, ctx.workers, record=record)
    if answer is None:
        return _error(404, f"no gate called {name!r} is defined in {ctx.rules_dir}")
    return json_response(answer)


# -- members, info --------------------------------------------------------------------------------------
async def get_members(request: web.Request) -> web.Response:
    """GET /members: hosts seen through heartbeats (alive, or failed when the heartbeat expired), from
    the workers' tables (fresh last heartbeat), or from the published statuses when none answers."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    try:
        statuses, _missing = await ctx.workers.statuses(subject="*", name=HEARTBEAT)
        source = "workers"
    except WorkersError:
        statuses = [r.record for r in ctx.hub.index.matching(StatusFilter(name=HEARTBEAT))]
        source = "index"
    return json_response({"members": [member_from_status(s).model_dump(mode="json") for s in statuses],
                          "source": source})


async def get_info(request: web.Request) -> web.Response:
    """GET /info: what this server serves (window sizes, retention, whether a token is needed)."""
    ctx = request.app[CTX]
    check_known(request.query, ())
    counts = await asyncio.to_thread(ctx.store.counts)
    return json_response({
        "ready": ctx.hub.ready, "identities": len(ctx.hub.index), "stream": {"epoch": ctx.hub.ring.epoch,
                                                                            "seq": ctx.hub.ring.seq},
        "window_sizes_ms": list(ctx.window_sizes_ms), "history_retention_ms": ctx.config.history_retention_ms,
        "metrics_retention_ms": ctx.config.metrics_retention_ms,
        "worker_window_retention_ms": ctx.worker_window_retention_ms, "max_page": ctx.config.max_page,
        "token_required": {"changes": ctx.config.token_text() is not None,
                           "reads": ctx.config.token_text() is not None and ctx.config.auth_reads},
        "workers": list(ctx.workers.urls), "stored": counts, "started": ctx.started_ms,
        "topic_prefix": ctx.settings.topic_prefix})


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[CTX].window_sizes_ms))


def api_routes() -> list[web.RouteDef]:
    """Every route of /api/v1 (the stream is added by app.web.server)."""
    p = API_PREFIX
    return [
        web.get(f"{p}/openapi.json", get_openapi, allow_head=False),
        web.get(f"{p}/info", get_info, allow_head=False),
        web.get(f"{p}/status", get_status, allow_head=False),
        web.get(f"{p}/status/groups", get_status_groups, allow_head=False),
        web.get(p + "/status/{subject}/{name:.+}", get_identity, allow_head=False),
        web.get(f"{p}/events", find_events, allow_head=False),
        web.get(p + "/events/{id}", get_event, allow_head=False),
        web.get(f"{p}/alerts", get_alerts, allow_head=False),
        web.get(f"{p}/metrics", get_metrics, allow_head=False),
        web.get(f"{p}/actions", get_actions, allow_head=False),
        web.get(p + "/trace/{id}", get_trace, allow_head=False),
        web.get(f"{p}/silences", list_silences, allow_head=False),
        web.post(f"{p}/silences", add_silence),
        web.delete(p + "/silences/{id}", expire_silence),
        web.get(f"{p}/backtests", list_backtests, allow_head=False),
        web.post(f"{p}/backtests", post_backtest),
        web.get(p + "/backtests/{id}", get_backtest, allow_head=False),
        web.get(f"{p}/rules", get_deployed_rules, allow_head=False),
        web.get(f"{p}/members", get_members, allow_head=False),
        web.get(f"{p}/gates", get_gates, allow_head=False),
        web.get(p + "/gates/{name}", get_gate_decision, allow_head=False),
    ]
