"""`http`: one HTTP request per attempt, with `Idempotency-Key: <action id>`.

Params: url (http/https, required), method (default POST), headers (object of strings),
json (any JSON value) or body (string), timeout (seconds; capped by executor.yaml http.max_timeout
and the attempt's limit). A 2xx answer succeeds; other answers fail with the status and the start
of the body; 5xx, 408, 425 and 429 are retried, other 4xx are not (a retry cannot fix them).

Declared idempotent: every attempt and every re-run after a crash sends the same Idempotency-Key,
so a receiver that deduplicates by it (as payment-style APIs do) applies the action once.
Redirects are not followed (the key must not travel to another host).
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import httpx

from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, ActionTimedOut, action
from app.executor.plugins.params import check_keys, get_param, string_map

__all__ = ["IDEMPOTENCY_HEADER", "http_action"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_RETRY_STATUSES = frozenset({408, 425, 429})
_PARAMS = ("url", "method", "headers", "json", "body", "timeout")


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Built once: creating it loads the CA bundle, too slow to repeat per request.
    return httpx.create_ssl_context()


def _request_args(call: ActionCall) -> tuple[str, str, dict[str, str], dict[str, object], float]:
    p = call.params
    check_keys(p, _PARAMS, plugin="http")
    url = get_param(p, "url", str, plugin="http")
    if not url.lower().startswith(("http://", "https://")):
        raise ActionRejected(f"http: url must start with http:// or https://, got {url[:60]!r}")
    method = get_param(p, "method", str, default="POST", plugin="http").upper()
    if method not in _METHODS:
        raise ActionRejected(f"http: method {method!r} is not one of {', '.join(_METHODS)}")
    headers = {k: v for k, v in string_map(p, "headers", plugin="http").items()
               if k.lower() != IDEMPOTENCY_HEADER.lower()}
    headers[IDEMPOTENCY_HEADER] = call.action.id
    content: dict[str, object] = {}
    if "json" in p and "body" in p:
        raise ActionRejected("http: give json or body, not both")
    if "json" in p:
        content["json"] = p["json"]
    elif "body" in p:
        content["content"] = get_param(p, "body", str, plugin="http").encode()
    http = call.config.http
    timeout_s = float(get_param(p, "timeout", (int, float), default=http.timeout_ms / 1000, plugin="http"))
    if timeout_s <= 0:
        raise ActionRejected("http: timeout must be positive")
    return method, url, headers, content, min(timeout_s, http.max_timeout_ms / 1000, call.timeout_s)


async def _read_capped(response: httpx.Response, limit: int) -> str:
    """The start of the body (at most `limit` bytes are kept; the rest is drained and dropped)."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode("utf-8", errors="replace")


@action("http", idempotent=True)
async def http_action(call: ActionCall) -> str:
    """Send an HTTP request with Idempotency-Key: <action id>; 2xx succeeds."""
    method, url, headers, content, timeout_s = _request_args(call)
    limit = call.config.max_output_bytes
    try:
        async with (httpx.AsyncClient(verify=_ssl_context(), timeout=timeout_s, follow_redirects=False) as client,
                    client.stream(method, url, headers=headers, **content) as response):  # type: ignore[arg-type]
            body = await _read_capped(response, limit)
    except httpx.TimeoutException as exc:
        raise ActionTimedOut(f"{method} {url}: no answer within {timeout_s:g}s ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise ActionFailed(f"{method} {url}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if 200 <= status < 300:
        return f"HTTP {status}\n{body}" if body else f"HTTP {status}"
    retryable = status >= 500 or status in _RETRY_STATUSES
    raise ActionFailed(f"{method} {url}: HTTP {status} {response.reason_phrase}", output=body, retryable=retryable)
