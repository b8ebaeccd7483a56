"""HTTP clients kept between requests, one per pinned destination, so that a plugin's requests to
the same place reuse their connections (no connect, no TLS handshake per request).

The clients are aiohttp sessions: asyncio-native, a request and its answer through safe_http cost
about a third of the CPU they did with httpx (httpcore over anyio yields to the event loop at every
lock and socket operation, so 50 requests at once moved through each stage together; a step of a
roll in benchmarks/orchestration.py).

app.executor.safe_http sends every hop to an address the outbound guard vetted, with the name kept
for the Host header and for TLS (SNI and the certificate check). A client per `PinnedOrigin` (scheme,
vetted address, port, TLS server name) can never hand a request for one name a TLS connection made
(and checked) for another name on the same address: each of its connections was made to that address
and checked for that name (whatever the pool's own key). Its connector resolves no names (`NoNames`):
it is only ever given vetted addresses. An origin busy with many requests at once gets several
clients (REQUESTS_PER_CLIENT). A client keeps no cookies (aiohttp's DummyCookieJar): it serves many
actions, and for plain http every name on the same address, so a cookie one answer set would go with
another action's request, maybe to another host. Proxies from the environment are not used
(trust_env off): the guard judges where the connection goes.

Idle connections are reused for `keepalive_s`, judged by their age only: aiohttp learns that a server
closed one when the event loop reads the socket, and the executor's loop runs only during agent
calls, so between batches a closed connection looks alive (httpcore polled each idle socket instead).
`keepalive_s` is therefore well below servers' usual keep-alive timeouts (gunicorn 2 s; uvicorn,
Apache, Node 5 s; nginx 75 s); a server closing sooner can fail the next request with
ServerDisconnectedError, retried like any transport failure.

Clients belong to the event loop they were made on: on another loop (a test's) the set starts anew.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from app.executor.allowlist import IPAddress, parse_address

__all__ = ["Lease", "NoNames", "PinnedClients", "PinnedOrigin", "pinned_origin", "tls_context"]

#: Idle connections are not reused after this long (see the module docstring).
KEEPALIVE_S = 1.0
#: Clients (destinations) kept at most; the least recently used one is closed beyond.
MAX_CLIENTS = 64
#: Requests one client serves at once; more to the same destination get another client (its
#: connector's pool stays small).
REQUESTS_PER_CLIENT = 8


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The TLS context of every client (built once: creating it loads the CA bundle)."""
    return httpx.create_ssl_context()


class NoNames(AbstractResolver):
    """The resolver of the clients' connectors: they connect to vetted addresses only, so a name to
    resolve there is a bug, refused (as a failed connection) rather than looked up."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """Refuses every name (aiohttp never asks for an address literal)."""
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: the pinned HTTP clients connect to vetted addresses "
                                                 f"only, never to a name")

    async def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class PinnedOrigin:
    """Where a pinned request's connection goes, and the name TLS checks it for."""

    scheme: str
    address: str
    port: int
    #: the TLS server name (SNI, certificate check); "" for http and for a URL with a literal address
    server_name: str


def pinned_origin(url: httpx.URL, address: IPAddress) -> PinnedOrigin:
    """The origin of a request for `url` sent to the vetted `address`."""
    host = url.raw_host.decode("ascii")
    https = url.scheme == "https"
    name = host if https and parse_address(host) is None else ""
    return PinnedOrigin(url.scheme, str(address), url.port or (443 if https else 80), name)


@dataclass(eq=False)
class Lease:
    """A client lent for one request: give it back with PinnedClients.release once its response is
    closed."""

    client: aiohttp.ClientSession
    users: int = 0


class PinnedClients:
    """aiohttp.ClientSessions per PinnedOrigin, kept between requests (see the module docstring)."""

    def __init__(self, *, keepalive_s: float = KEEPALIVE_S, max_clients: int = MAX_CLIENTS,
                 requests_per_client: int = REQUESTS_PER_CLIENT) -> None:
        self.keepalive_s = keepalive_s
        self.max_clients = max_clients
        self.requests_per_client = requests_per_client
        #: per origin, its clients (most origins have one)
        self._kept: OrderedDict[PinnedOrigin, list[Lease]] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(len(leases) for leases in self._kept.values())

    def lease(self, origin: PinnedOrigin) -> Lease:
        """A client for `origin` (made when it has none with room), lent until `release`. Call from
        the event loop that uses it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # made on another loop: unusable here (and that loop may be gone)
            for lease in (lease for leases in self._kept.values() for lease in leases):
                lease.client.detach()  # closed (no "unclosed session" warning); its connections go with it
            self._kept.clear()
            self._loop = loop
        leases = self._kept.setdefault(origin, [])
        self._kept.move_to_end(origin)
        kept = next((lease for lease in leases if lease.users < self.requests_per_client), None)
        if kept is None:
            # tls_context() for https only: building it loads the CA bundle (~0.1 s of CPU), which a
            # process sending plain http never needs (True: aiohttp's verifying default, unused for http)
            ssl_context = tls_context() if origin.scheme == "https" else True
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=self.keepalive_s,
                                             ssl=ssl_context, resolver=NoNames())
            kept = Lease(aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                               trust_env=False))
            leases.append(kept)
        kept.users += 1
        self._trim()
        return kept

    def release(self, lease: Lease) -> None:
        """The request that leased `lease` is over (its response closed)."""
        lease.users -= 1
        self._trim()

    def _trim(self) -> None:
        """Close the least recently used idle clients beyond `max_clients` (one in use is kept: closing
        it would break its request)."""
        excess = len(self) - self.max_clients
        if excess <= 0:
            return
        for origin, leases in list(self._kept.items()):
            for lease in [lease for lease in leases if lease.users == 0]:
                if excess <= 0:
                    return
                leases.remove(lease)
                excess -= 1
                task = asyncio.ensure_future(lease.client.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            if not leases:
                del self._kept[origin]

    async def aclose(self) -> None:
        """Close every client (those made on another loop are only let go: they cannot run here)."""
        kept = [lease for leases in self._kept.values() for lease in leases]
        self._kept.clear()
        here = self._loop is asyncio.get_running_loop()
        for lease in kept:
            if here:
                await lease.client.close()
            else:
                lease.client.detach()
