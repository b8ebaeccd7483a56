"""HTTP requests for plugins, through the outbound guard: `await request(call.egress, ...)`.

Every hop — the first request and each redirect — is judged by the allowlist before anything is
sent, and connects to an address the guard vetted (the URL's host is replaced by it), while the
Host header and TLS (SNI and certificate check) keep the name. Redirects (301, 302, 303, 307,
308) are followed up to `max_redirects` (0: a redirect is the answer): 303, and 301/302 after a
POST, continue as a body-less GET (as browsers and httpx do); 307/308 repeat the method and body.
A hop to another origin (scheme, host or port) carries only the harmless headers (Idempotency-Key,
Accept, Content-Type, User-Agent): the action's other headers may hold credentials meant for the
first host.

Proxies from the environment are not used (trust_env off): the guard judges where the connection
goes, which a proxy would change. URLs are parsed and joined with httpx.URL; requests go out through
the pinned aiohttp clients of app.executor.http_clients. Each hop's connect and each read wait at
most `timeout_s` (the attempt's own limit bounds the whole request).
"""

from __future__ import annotations

import json as jsonlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import aiohttp
import httpx
from yarl import URL

from app.executor.allowlist import IPAddress
from app.executor.egress import EgressGuard, EgressRefused
from app.executor.http_clients import Lease, PinnedClients, pinned_origin
from app.executor.plugin import ActionFailed, ActionRejected, ActionTimedOut

__all__ = ["CROSS_ORIGIN_HEADERS", "REDIRECT_STATUSES", "HttpAnswer", "request"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Headers that follow a redirect to another origin; the rest stay with the first one.
CROSS_ORIGIN_HEADERS = frozenset({"idempotency-key", "accept", "content-type", "user-agent"})
#: A header name is an RFC 9110 token; a value is printable ASCII, spaces and tabs (no CR/LF: no
#: header of its own smuggled in). Checked before anything is sent, as httpx's h11 did.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


@dataclass
class HttpAnswer:
    """The final answer of a request (after redirects): status, reason, the start of the body."""

    status: int
    reason: str
    body: str
    url: str
    redirects: list[str] = field(default_factory=list)


@dataclass
class _Hop:
    method: str
    url: httpx.URL
    headers: dict[str, str]
    content: bytes | None


@lru_cache(maxsize=256)
def _parse_url(text: str) -> httpx.URL:
    """httpx.URL(text), remembered (httpx.URLs are immutable): a roll sends every member's step to
    the same URL, and parsing was a few % of a step's CPU. Raises httpx.InvalidURL."""
    return httpx.URL(text)


@lru_cache(maxsize=256)
def _pinned_url(url: httpx.URL, address: IPAddress) -> URL:
    """What goes on the wire for `url` pinned to the vetted `address`: the URL with the address as
    its host (remembered, as _parse_url)."""
    return URL(str(url.copy_with(host=str(address))), encoded=True)


def _check_headers(headers: dict[str, str]) -> None:
    """ActionRejected for a header that is not valid HTTP (see _HEADER_NAME)."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ActionRejected(f"header name {name[:100]!r} is not valid in HTTP (letters, digits and "
                                 f"!#$%&'*+-.^_`|~ only)")
        if not _HEADER_VALUE.fullmatch(value):
            raise ActionRejected(f"the value of header {name} holds a control or non-ASCII character "
                                 f"(line breaks could smuggle in a header of its own)")


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port


def _next_hop(hop: _Hop, status: int, location: str) -> _Hop:
    try:
        url = hop.url.join(location)
    except httpx.InvalidURL as exc:
        raise ActionFailed(f"{hop.method} {hop.url}: redirect to an invalid URL {location[:200]!r}: {exc}",
                           retryable=False) from None
    method, content, headers = hop.method, hop.content, dict(hop.headers)
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, content = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
    if _origin(url) != _origin(hop.url):
        headers = {k: v for k, v in headers.items() if k.lower() in CROSS_ORIGIN_HEADERS}
    return _Hop(method, url, headers, content)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> str:
    """The start of the body (at most `limit` bytes are kept; the rest is drained and dropped)."""
    kept = bytearray()
    async for chunk in response.content.iter_any():
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode("utf-8", errors="replace")


async def _send_pinned(clients: PinnedClients, guard: EgressGuard, hop: _Hop,
                       timeout_s: float) -> tuple[aiohttp.ClientResponse, Lease]:
    """Send one hop to a vetted address of its host (the next one if connecting fails), with the
    client of that pinned origin (released by the caller once the response is closed)."""
    url = hop.url
    if url.scheme not in ("http", "https"):
        raise EgressRefused(f"{url}: only http and https URLs are fetched")
    host = url.raw_host.decode("ascii")
    vetted = await guard.vet(url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
    headers = {**hop.headers, "Host": url.netloc.decode("ascii")}
    # connect: getting a connection (pool and TCP/TLS); sock_read: each wait for the answer's bytes
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    last: aiohttp.ClientConnectorError | None = None
    for address in vetted.addresses:
        origin = pinned_origin(url, address)
        lease = clients.lease(origin)
        try:
            r = await lease.client.request(
                hop.method, _pinned_url(url, address), headers=headers,
                data=hop.content, allow_redirects=False, timeout=timeout,
                # TLS (SNI and the certificate check) for the name, not the address it was pinned to
                server_hostname=origin.server_name or None,
                skip_auto_headers=("Content-Type",))  # no made-up type for a body given as bytes
            return r, lease
        except aiohttp.ClientConnectorError as exc:  # nothing was sent; try the next address
            clients.release(lease)
            last = exc
        except BaseException:
            clients.release(lease)
            raise
    assert last is not None
    raise last


async def request(guard: EgressGuard, method: str, url: str, *, headers: dict[str, str] | None = None,
                  content: bytes | None = None, json: Any = None, timeout_s: float, max_redirects: int = 5,
                  body_limit: int = 4096) -> HttpAnswer:
    """Send an HTTP request through the outbound guard, following redirects (see the module
    docstring). Raises EgressRefused (REJECTED) for a refused hop, ActionTimedOut, or ActionFailed
    for transport errors and too many redirects; any HTTP status is returned, not raised."""
    headers = dict(headers or {})
    _check_headers(headers)
    if json is not None:
        if content is not None:
            raise ActionRejected("give json or content, not both")
        try:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ActionRejected(f"the json body cannot be sent: {exc}") from None
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    try:
        hop = _Hop(method.upper(), _parse_url(url), headers, content)
    except httpx.InvalidURL as exc:
        raise ActionRejected(f"{url[:200]!r} is not a valid URL: {exc}") from None
    redirects: list[str] = []
    # The guard's clients keep connections between requests; without them, clients for this request only.
    clients = guard.clients if guard.clients is not None else PinnedClients()
    try:
        while True:
            try:
                response, lease = await _send_pinned(clients, guard, hop, timeout_s)
            except EgressRefused as exc:
                if not redirects:
                    raise
                raise EgressRefused(f"redirect {len(redirects)} from {redirects[-1]} refused: {exc}") from None
            try:
                location = response.headers.get("location")
                if response.status not in REDIRECT_STATUSES or not location or not max_redirects:
                    body = await _read_capped(response, body_limit)
                    return HttpAnswer(response.status, response.reason or "", body, str(hop.url), redirects)
            finally:
                try:
                    # Read to the end: the connection goes back to the pool; else it is closed.
                    response.release()
                finally:
                    clients.release(lease)
            if len(redirects) >= max_redirects:
                raise ActionFailed(f"{method} {url}: more than {max_redirects} redirect(s) (last to "
                                   f"{location[:200]})", retryable=False)
            redirects.append(str(hop.url))
            hop = _next_hop(hop, response.status, location)
    except TimeoutError as exc:  # aiohttp's connect and read timeouts (ServerTimeoutError) among them
        raise ActionTimedOut(f"{hop.method} {hop.url}: no answer within {timeout_s:g}s "
                             f"({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:
        raise ActionFailed(f"{hop.method} {hop.url}: {type(exc).__name__}: {exc}") from None
    finally:
        if clients is not guard.clients:
            await clients.aclose()
