"""`http`: one HTTP request per attempt, with `Idempotency-Key: <action id>`.

Params: url (http/https, required), method (default POST), headers (object of strings),
json (any JSON value) or body (string), timeout (seconds; capped by executor.yaml http.max_timeout
and the attempt's limit). A 2xx answer succeeds; other answers fail with the status and the start
of the body; 5xx, 408, 425 and 429 are retried, other 4xx are not (a retry cannot fix them).

Only destinations of executor.yaml's `outbound` allowlist are reached (by default: public
addresses on ports 80 and 443): the URL's host is resolved once, every address judged, and the
request sent to a vetted address; a refused one is REJECTED before anything is sent. Redirects are
followed up to `http.max_redirects`, each judged the same way (app.executor.safe_http).

Declared idempotent: every attempt and every re-run after a crash sends the same Idempotency-Key,
so a receiver that deduplicates by it (as payment-style APIs do) applies the action once.
"""

from __future__ import annotations

from typing import Any

from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, action
from app.executor.plugins.params import check_keys, get_param, string_map
from app.executor.safe_http import request

__all__ = ["IDEMPOTENCY_HEADER", "http_action"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_RETRY_STATUSES = frozenset({408, 425, 429})
_PARAMS = ("url", "method", "headers", "json", "body", "timeout")


def _request_args(call: ActionCall) -> tuple[str, str, dict[str, str], dict[str, Any], float]:
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
    content: dict[str, Any] = {}
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


@action("http", idempotent=True)
async def http_action(call: ActionCall) -> str:
    """Send an HTTP request with Idempotency-Key: <action id>; 2xx succeeds."""
    method, url, headers, content, timeout_s = _request_args(call)
    try:
        answer = await request(call.egress, method, url, headers=headers, timeout_s=timeout_s,
                               max_redirects=call.config.http.max_redirects,
                               body_limit=call.config.max_output_bytes, **content)
    except ActionRejected as exc:
        raise ActionRejected(f"http: {exc}") from None
    status, body = answer.status, answer.body
    via = f" (after {len(answer.redirects)} redirect(s), at {answer.url})" if answer.redirects else ""
    if 200 <= status < 300:
        return f"HTTP {status}{via}\n{body}" if body else f"HTTP {status}{via}"
    retryable = status >= 500 or status in _RETRY_STATUSES
    raise ActionFailed(f"{method} {url}: HTTP {status} {answer.reason}{via}", output=body, retryable=retryable)
