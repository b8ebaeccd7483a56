"""The HTTP bridge: webhook and telemetry endpoints in front of an EventSink (aiohttp).

Endpoints: POST /v1/events, /v1/alertmanager, /v1/github, /v1/nagios, /v1/puppet; GET /healthz,
GET /metrics (Prometheus text). Every error is JSON: `{"error": <what is wrong>, "field": <where>}`.
With a token set (app.api_token), /metrics needs it too unless VIGIL_API_METRICS_OPEN; /healthz never.

Checks, in order: token (401; `Authorization: Bearer <token>`, or HTTP Basic with the token as
password for senders that only do Basic, like Puppet's `reporturl`), body size (413), GitHub
signature (401), content type (415), content (400).

Batches (events, Alertmanager alerts, Puppet resources) are never all-or-nothing, so nothing valid
is lost to a bad neighbour: valid items are sent and the response lists the invalid ones by index.
    202 {"accepted": n}                                every item accepted
    207 {"accepted": n, "rejected": [{index, field, error}, ...]}   some rejected
    400 {"error", "field", "accepted": 0, "rejected": [...]}        all rejected
    200 {"accepted": 0}                                nothing to send (e.g. GitHub `ping`)
    503 {"error", "accepted": n, "rejected": [...]}    the bus did not take (all of) it: retry later
A 2xx is sent only once Kafka has acknowledged every accepted event of the request, so it tells
senders with retries (Alertmanager) not to resend. A 503 (with `Retry-After:
VIGIL_BRIDGE_RETRY_AFTER_S`) says how many were acknowledged; when Kafka did not answer within
VIGIL_BRIDGE_DELIVERY_TIMEOUT_S the rest may still arrive, so a resend may duplicate them (events
carry ids). Kafka or the schema registry being unavailable is always such a 503, never a 4xx and
never a dead letter: the input is fine.

Rejected input that got past the token, size and signature checks (400, 415, the rejected items of
a 207, and bodies that hit a bug: 500) also goes to the dead-letter topic through the sink: the
whole body, headers naming `http/<endpoint>`, the reason and every problem. Unauthenticated
requests never reach Kafka. Dead letters are rate-limited per endpoint and reason
(app.bridges.dead_letters): past the limit they are counted and summarised, not written.

Deliveries are deduplicated (app.bridges.ledger): a request naming a delivery (`Idempotency-Key` on
any endpoint, GitHub's `X-GitHub-Delivery`, or an Alertmanager notification's group and alerts)
that was accepted within VIGIL_BRIDGE_DEDUP_WINDOW_S is answered without producing again:
    202 {"accepted": n, "duplicate": true}             (n: events the first delivery produced)
    422 {"error", "field": "Idempotency-Key"}          the key was used for another body
    503 {"error"} + Retry-After                        the same delivery is still being handled
A delivery's events get ids derived from its key (events that name their own keep them), so
copies that a lapsed claim lets through carry the same ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from app.api_token import is_authorized
from app.bridges.config import ENDPOINTS, BridgeConfig
from app.bridges.dead_letters import DeadLetterGate
from app.bridges.deliveries import IDEMPOTENCY_HEADER, DeliveryKey, header_delivery_key
from app.bridges.errors import ParseError
from app.bridges.ledger import Claim, DeliveryBusy, DeliveryLedger, LedgerUnavailable, MemoryDeliveryLedger
from app.bridges.metrics import CONTENT_TYPE_LATEST, BridgeMetrics
from app.bridges.parsers._common import ParseResult, decode_utf8, missing_fields
from app.bridges.parsers.alertmanager import alertmanager_group_state, parse_alertmanager
from app.bridges.parsers.github import SIGNATURE_HEADER, parse_github, verify_github_signature
from app.bridges.parsers.nagios import parse_nagios
from app.bridges.parsers.puppet import parse_puppet_report
from app.bridges.parsers.vigil_json import parse_vigil_json
from app.bridges.sink import BatchDelivery, EventSink, SinkError
from app.model.ids import deterministic_id

__all__ = ["BRIDGE_KEY", "HttpBridge", "make_http_app"]

log = logging.getLogger(__name__)

JSON = ("application/json",)
FORM = ("application/x-www-form-urlencoded",)
YAML = ("application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml")
# Where a request's body is kept once it is authenticated, for the dead-letter topic if rejected.
_BODY: web.RequestKey[bytes] = web.RequestKey("vigil_body", bytes)
GITHUB_DELIVERY_HEADER = "X-GitHub-Delivery"


class _Reject(Exception):
    """Ends a request with a JSON error; `reason` is the metrics label."""

    def __init__(self, status: int, reason: str, field: str | None, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.field, self.message, self.extra = status, reason, field, message, extra


class HttpBridge:
    """Request handling shared by all endpoints; one per application."""

    def __init__(self, sink: EventSink, config: BridgeConfig, metrics: BridgeMetrics, *,
                 ledger: DeliveryLedger | None = None, dead_letters: DeadLetterGate | None = None) -> None:
        self.sink = sink
        self.config = config
        self.metrics = metrics
        self._token = config.token_bytes()
        self._github_secret = config.github_secret_bytes()
        #: where accepted deliveries are recorded (None: dedup off, VIGIL_BRIDGE_DEDUP_WINDOW_S=0)
        self.ledger = ledger
        if ledger is None and config.dedup_window_s > 0:
            self.ledger = MemoryDeliveryLedger(window_s=config.dedup_window_s, lease_s=config.dedup_lease,
                                               wait_s=config.delivery_timeout_s)
        self.dead_letters = dead_letters or DeadLetterGate(sink, config.dead_letters)
        metrics.registry.register(self.dead_letters.limiter.collector())

    # -- endpoints -----------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        """POST /v1/events: Vigil events or registered typed records (JSON)."""
        body, _ = await self._accept(request, "events", JSON)
        key = self._idempotency_key(request, "events", body)
        if key is None:
            return await self._run(request, "events", parse_vigil_json, body)
        # Events that name no id get one from the key (the others keep theirs): a resend has the same ids.
        return await self._run(request, "events", lambda b: parse_vigil_json(b, id_for=_id_maker(key)), body,
                               key=key, keep_ids=True)

    async def alertmanager(self, request: web.Request) -> web.Response:
        """POST /v1/alertmanager: Alertmanager webhook (version 4); a resend of an unchanged group is a duplicate."""
        body, _ = await self._accept(request, "alertmanager", JSON)
        key = self._idempotency_key(request, "alertmanager", body)
        if key is None:
            state = await asyncio.get_running_loop().run_in_executor(None, alertmanager_group_state, body)
            key = DeliveryKey(f"alertmanager/group/{state}", f"an unchanged Alertmanager group ({state[:12]})") \
                if state is not None else None
        return await self._run(request, "alertmanager", parse_alertmanager, body, key=key)

    async def github(self, request: web.Request) -> web.Response:
        """POST /v1/github: GitHub webhook, signature-checked when a secret is configured."""
        body, content_type = await self._accept(request, "github", JSON + FORM, verify=self._verify_github)
        if content_type in FORM:
            # GitHub's "application/x-www-form-urlencoded" delivery carries the JSON in `payload`.
            fields = _form_fields(body)
            if "payload" not in fields:
                raise _Reject(400, "invalid", "payload", "a form-encoded delivery needs a 'payload' field")
            body = fields["payload"].encode()
        event_type = request.headers.get("X-GitHub-Event")
        delivery = request.headers.get(GITHUB_DELIVERY_HEADER)
        # A GUID per delivery (a redelivery repeats it); the event type too, in case a sender reuses one.
        key = self._idempotency_key(request, "github", body) or \
            _header_key(f"github/{event_type}", GITHUB_DELIVERY_HEADER, delivery)
        return await self._run(request, "github", lambda b: parse_github(event_type, b, delivery_id=delivery), body,
                               key=key)

    async def nagios(self, request: web.Request) -> web.Response:
        """POST /v1/nagios: one check result, JSON or form-encoded."""
        body, content_type = await self._accept(request, "nagios", JSON + FORM)
        data: Any = _form_fields(body) if content_type in FORM else body
        return await self._run(request, "nagios", parse_nagios, data,
                               key=self._idempotency_key(request, "nagios", body))

    async def puppet(self, request: web.Request) -> web.Response:
        """POST /v1/puppet: a Puppet run report (YAML from the http report processor, or JSON)."""
        body, _ = await self._accept(request, "puppet", YAML + JSON)
        return await self._run(request, "puppet", parse_puppet_report, body,
                               key=self._idempotency_key(request, "puppet", body))

    async def healthz(self, request: web.Request) -> web.Response:
        """GET /healthz: the process is up and serving (200); "degraded" with the reasons while the
        bus cannot take events (the bridge answers 503 meanwhile and recovers by itself)."""
        problems = self.sink.problems() + (self.ledger.problems() if self.ledger is not None else [])
        return web.json_response({"status": "degraded" if problems else "ok", "problems": problems})

    async def prometheus(self, request: web.Request) -> web.Response:
        """GET /metrics: accepted/rejected counters per endpoint and reason."""
        if self._token is not None and not self.config.metrics_open:
            _check_token(request, self._token)
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- steps ---------------------------------------------------------------------------------

    async def _accept(self, request: web.Request, source: str, content_types: tuple[str, ...], *,
                      verify: Callable[[web.Request, bytes], None] | None = None) -> tuple[bytes, str]:
        """Authorise, read the body within the limit, verify, check the content type."""
        if self._token is not None and source in self.config.token_endpoints:
            _check_token(request, self._token)
        body = await self._read_body(request)
        if verify is not None:
            verify(request, body)
        request[_BODY] = body
        content_type = request.content_type.lower()
        if content_type not in content_types:
            raise _Reject(415, "bad_content_type", "Content-Type",
                          f"{request.headers.get('Content-Type', '(none)')!r} is not accepted here; "
                          f"send {' or '.join(content_types)}")
        return body, content_type

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = f"body is over the {limit}-byte limit (VIGIL_BRIDGE_MAX_BODY_BYTES)"
        if request.content_length is not None and request.content_length > limit:
            raise _Reject(413, "too_large", "body", too_large)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Reject(413, "too_large", "body", too_large) from None

    def _verify_github(self, request: web.Request, body: bytes) -> None:
        if self._github_secret is None:
            return
        header = request.headers.get(SIGNATURE_HEADER)
        if not verify_github_signature(self._github_secret, body, header):
            problem = "missing" if not header else "does not match the body and the configured secret"
            raise _Reject(401, "bad_signature", SIGNATURE_HEADER, f"signature {problem}")

    def _idempotency_key(self, request: web.Request, endpoint: str, body: bytes) -> DeliveryKey | None:
        """The delivery a request's Idempotency-Key names (None without one)."""
        return _header_key(endpoint, IDEMPOTENCY_HEADER, request.headers.get(IDEMPOTENCY_HEADER), body=body)

    async def _run(self, request: web.Request, source: str, parse: Callable[[Any], ParseResult],
                   data: Any, *, key: DeliveryKey | None = None, keep_ids: bool = False) -> web.Response:
        """Produce a delivery once: answer a duplicate from the ledger, else claim it, parse and
        deliver, and record the outcome (accepted, or released for a retry)."""
        if key is None or self.ledger is None:
            response, _ = await self._parse_and_deliver(request, source, parse, data)
            return response
        claim = await self._admit(source, key)
        if isinstance(claim, web.Response):
            return claim
        try:
            response, accepted = await self._parse_and_deliver(request, source, parse, data,
                                                               key=None if keep_ids else key)
        except BaseException:
            await self.ledger.released(claim)
            raise
        if response.status < 300:
            await self.ledger.accepted(claim, accepted)
        else:
            await self.ledger.released(claim)
        return response

    async def _admit(self, source: str, key: DeliveryKey) -> Claim | web.Response:
        """This request's claim of `key`, or the answer to a duplicate."""
        assert self.ledger is not None
        try:
            admission = await self.ledger.admit(key)
        except (LedgerUnavailable, DeliveryBusy) as exc:
            reason = "delivery_busy" if isinstance(exc, DeliveryBusy) else "ledger_unavailable"
            raise _Reject(503, reason, None, f"{exc}; retry later",
                          headers={"Retry-After": str(self.config.retry_after_s)}) from None
        if admission.conflict:
            raise _Reject(422, "idempotency_conflict", IDEMPOTENCY_HEADER,
                          f"{key.origin} was already used for a request with another body: use a new key for new "
                          f"content")
        if admission.claim is None:
            self.metrics.duplicate(source)
            return web.json_response({"accepted": admission.accepted, "duplicate": True},
                                     status=202 if admission.accepted else 200)
        return admission.claim

    async def _parse_and_deliver(self, request: web.Request, source: str, parse: Callable[[Any], ParseResult],
                                 data: Any, *, key: DeliveryKey | None = None) -> tuple[web.Response, int]:
        """Parse off the event loop (YAML and big batches take a while), then hand to the sink; with
        `key`, the events get ids derived from it."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, parse, data)
        except ParseError as exc:
            raise _Reject(400, "invalid", exc.field, exc.reason) from None
        if key is not None:
            make_id = _id_maker(key)
            result.events = [event.model_copy(update={"id": make_id(index)})
                             for index, event in enumerate(result.events)]
        return await self._deliver(request, source, result)

    async def _deliver(self, request: web.Request, source: str, result: ParseResult) -> tuple[web.Response, int]:
        """Send the valid items, wait until Kafka has them, dead-letter the invalid ones, answer
        (with how many events Kafka acknowledged)."""
        rejected = [err.to_dict() for err in result.errors]
        if result.errors:
            self.metrics.rejected(source, "invalid", rejected[0]["error"], count=len(result.errors))
        batch = BatchDelivery()
        # Encoding (and a first schema lookup) takes time: keep it off the event loop too.
        mismatches, failure = await asyncio.get_running_loop().run_in_executor(None, self._send, result, batch)
        for item in mismatches:
            self.metrics.rejected(source, "schema_mismatch", f"{item['field']}: {item['error']}")
        rejected = sorted(rejected + mismatches, key=lambda item: item.get("index", -1))
        if rejected:
            problems = "; ".join(f"[{item.get('index', 0)}] {item['field']}: {item['error']}" for item in rejected)
            self.dead_letter(request, source, "invalid" if result.errors else "schema_mismatch", problems)
        acknowledged = await batch.wait(self.config.delivery_timeout_s)
        self.metrics.accepted(source, batch.delivered)
        for event in result.events:
            self.metrics.partial(source, missing_fields(event))
        problem = _delivery_problem(batch, failure, acknowledged, self.config.delivery_timeout_s)
        if problem is not None:  # counted and logged (rate-limited) with the other rejections
            reason, message = problem
            raise _Reject(503, reason, None, message, accepted=batch.delivered, rejected=rejected,
                          headers={"Retry-After": str(self.config.retry_after_s)})
        accepted = batch.delivered
        if not rejected:
            return web.json_response({"accepted": accepted}, status=202 if accepted else 200), accepted
        if accepted:
            return web.json_response({"accepted": accepted, "rejected": rejected}, status=207), accepted
        return web.json_response({"error": rejected[0]["error"], "field": rejected[0]["field"],
                                  "accepted": 0, "rejected": rejected}, status=400), 0

    def _send(self, result: ParseResult, batch: BatchDelivery) -> tuple[list[dict[str, Any]], Exception | None]:
        """Hand the valid items to the sink (in a worker thread); the typed records it refused, and the
        error that stopped the sending, if any (returned, so what was sent before it is still known)."""
        mismatches: list[dict[str, Any]] = []
        try:
            for event in result.events:
                self.sink.send(event, on_delivery=batch.report)
                batch.sent()
            for typed in result.typed:
                try:
                    self.sink.send_typed(typed.type_fullname, typed.record, on_delivery=batch.report)
                except SinkError as exc:
                    field = f"{typed.field_prefix}{exc.field}" if exc.field else typed.field_prefix.rstrip(".")
                    mismatches.append({"index": typed.index, "field": field or "body", "error": exc.message})
                else:
                    batch.sent()
        except Exception as exc:  # the bus is unavailable (whatever the sink raises): a 503, not a 500
            return mismatches, exc
        return mismatches, None

    def dead_letter(self, request: web.Request, source: str, reason: str, detail: str) -> None:
        """Send an authenticated request's body to the dead-letter topic (unauthenticated ones never),
        within the dead-letter rate limit."""
        body = request.get(_BODY)
        if body is not None:
            self.dead_letters.send(f"http/{source}", reason, body, detail=detail, peer=request.remote)


def _header_key(endpoint: str, header: str, value: str | None, *, body: bytes | None = None) -> DeliveryKey | None:
    """header_delivery_key, a bad value being a 400 naming the header."""
    try:
        return header_delivery_key(endpoint, header, value, body=body)
    except ParseError as exc:
        raise _Reject(400, "invalid", exc.field, exc.reason) from None


def _id_maker(key: DeliveryKey) -> Callable[[int], str]:
    """The id of a delivery's n-th event: the same every time the delivery is sent."""
    return lambda index: deterministic_id("delivery", key.key, str(index))


def _delivery_problem(batch: BatchDelivery, failure: Exception | None, acknowledged: bool,
                      timeout_s: float) -> tuple[str, str] | None:
    """Why a request's events are not all in Kafka (reason label, message), or None if they are."""
    if failure is not None:
        return "sink_error", (f"could not hand events to the event bus after {batch.sent_count} "
                              f"item(s): {failure}")
    if batch.failures:
        return "delivery_failed", (f"{len(batch.failures)} of {batch.sent_count} event(s) could not be "
                                   f"delivered to Kafka: {batch.failures[0]}")
    if not acknowledged:
        return "not_acknowledged", (f"Kafka did not acknowledge {batch.outstanding} of {batch.sent_count} "
                                    f"event(s) within {timeout_s:g}s; they may still arrive, so a resend may "
                                    f"duplicate them")
    return None


def _check_token(request: web.Request, token: bytes) -> None:
    """401 unless the request presents `token` (Bearer, or as the Basic password); constant-time."""
    if not is_authorized(request.headers.get("Authorization"), token, allow_basic=True):
        raise _Reject(401, "unauthorized", "Authorization",
                      "a valid token is required: send 'Authorization: Bearer <VIGIL_API_TOKEN>'",
                      headers={"WWW-Authenticate": 'Bearer realm="vigil"'})


def _form_fields(body: bytes) -> dict[str, str]:
    """Form fields (first value of each); non-UTF-8 is a 400 like any other bad input."""
    try:
        text = decode_utf8(body)
    except ParseError as exc:
        raise _Reject(400, "invalid", exc.field, exc.reason) from None
    return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}


BRIDGE_KEY: web.AppKey[HttpBridge] = web.AppKey("vigil_http_bridge", HttpBridge)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Render every error as JSON, count rejections, and never let one request take the server down."""
    bridge = request.app[BRIDGE_KEY]
    source = request.match_info.route.name or "http"
    try:
        return await handler(request)
    except _Reject as exc:
        bridge.metrics.rejected(source, exc.reason, exc.message)
        if exc.status < 500:
            bridge.dead_letter(request, source, exc.reason, f"{exc.field}: {exc.message}" if exc.field else exc.message)
        body = {"error": exc.message, "field": exc.field}
        body.update({k: v for k, v in exc.extra.items() if k != "headers"})
        return web.json_response(body, status=exc.status, headers=exc.extra.get("headers"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason, "field": None}, status=exc.status)
    except Exception:
        log.exception("%s: unexpected error handling %s %s", source, request.method, request.path)
        bridge.metrics.rejected(source, "internal_error")
        bridge.dead_letter(request, source, "internal_error", "the bridge failed on this input (see its log)")
        return web.json_response({"error": "internal error (logged)", "field": None}, status=500)


def make_http_app(sink: EventSink, config: BridgeConfig, *, metrics: BridgeMetrics | None = None,
                  ledger: DeliveryLedger | None = None, dead_letters: DeadLetterGate | None = None,
                  ) -> web.Application:
    """The aiohttp application of the HTTP bridge (serve it with aiohttp's runners).

    `ledger`: where accepted deliveries are recorded (the Kafka ledger shares them between replicas
    and restarts; the caller starts and closes it); default: one in this process only."""
    bridge = HttpBridge(sink, config, metrics or BridgeMetrics(log), ledger=ledger, dead_letters=dead_letters)
    # client_max_size makes aiohttp itself refuse to buffer more than the limit.
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_json_errors])
    app[BRIDGE_KEY] = bridge
    for name in ENDPOINTS:
        app.router.add_post(f"/v1/{name}", getattr(bridge, name), name=name)
    app.router.add_get("/healthz", bridge.healthz, name="healthz")
    app.router.add_get("/metrics", bridge.prometheus, name="metrics")

    async def _start(_: web.Application) -> None:
        bridge.dead_letters.start()

    async def _flush(_: web.Application) -> None:
        await bridge.dead_letters.stop()  # the last summaries, before the flush
        await asyncio.get_running_loop().run_in_executor(None, sink.flush)

    app.on_startup.append(_start)
    app.on_cleanup.append(_flush)
    if config.github_secret_bytes() is None:
        log.warning("VIGIL_GITHUB_SECRET is not set: /v1/github accepts unsigned deliveries")
    if config.token_bytes() is None:
        log.warning("VIGIL_API_TOKEN is not set: the HTTP bridge's endpoints need no token")
    return app
