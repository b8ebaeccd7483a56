"""The outbound guard every connecting plugin goes through: resolve a destination's host once,
judge every address against executor.yaml's `outbound` allowlist (app.executor.allowlist), and
hand back the vetted addresses to connect to.

    vetted = await call.egress.vet("smtp", relay_host, 25)   # EgressRefused (REJECTED) if not allowed
    sock = socket.create_connection((str(vetted.addresses[0]), 25))

Plugins connect to a vetted address, never to the name again: a second lookup between the check
and the connection could answer differently (DNS rebinding). HTTP plugins use
app.executor.safe_http, which does this, keeps the name for the Host header and TLS, and re-vets
every redirect. The resolver is injectable (tests resolve names without DNS).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.executor.allowlist import (
    Destination,
    IPAddress,
    OutboundConfig,
    Verdict,
    decide,
    parse_address,
    prefilter,
)
from app.executor.http_clients import PinnedClients
from app.executor.plugin import ActionFailed, ActionRejected

__all__ = ["VERDICTS_KEPT", "EgressGuard", "EgressRefused", "Resolver", "Vetted", "system_resolver"]

#: Verdicts a guard keeps (see EgressGuard.vet); beyond, it starts anew.
VERDICTS_KEPT = 1024

#: resolver(host, port) -> the addresses `host` resolves to (raises OSError/socket.gaierror).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class EgressRefused(ActionRejected):
    """The destination is not allowed by the outbound allowlist; decided before connecting."""


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver (getaddrinfo), in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_address(str(sockaddr[0]))
        if address is not None and address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True, slots=True)
class Vetted:
    """A destination the allowlist allowed, with the addresses to connect to (in order)."""

    destination: Destination
    addresses: tuple[IPAddress, ...]
    reason: str


class EgressGuard:
    """Judges destinations against one executor's outbound allowlist."""

    def __init__(self, config: OutboundConfig, *, resolver: Resolver | None = None,
                 clients: PinnedClients | None = None) -> None:
        self.config = config
        self.resolver = resolver or system_resolver
        #: HTTP clients kept between requests to vetted destinations (app.executor.http_clients);
        #: None: each request makes its own (and closes it)
        self.clients = clients
        #: decide()'s verdict per (destination, addresses) (see _decide)
        self._verdicts: dict[tuple[Destination, tuple[IPAddress, ...]], Verdict] = {}

    async def vet(self, scheme: str, host: str, port: int) -> Vetted:
        """Resolve `host` and judge the destination. Raises EgressRefused (a REJECTED result)
        when it is not allowed, ActionFailed when the name cannot be resolved."""
        dest = Destination(scheme.lower(), host.lower().rstrip(".").strip("[]"), port)
        early = prefilter(self.config, dest)
        if early is not None:
            raise EgressRefused(early.reason)
        literal = parse_address(dest.host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = list(await self.resolver(dest.host, port))
            except OSError as exc:
                transient = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
                raise ActionFailed(f"{dest}: cannot resolve {dest.host}: {exc.strerror or exc}",
                                   retryable=transient) from None
        verdict = self._decide(dest, tuple(addresses))
        if not verdict.allowed:
            raise EgressRefused(verdict.reason)
        return Vetted(dest, tuple(addresses), verdict.reason)

    def _decide(self, dest: Destination, addresses: tuple[IPAddress, ...]) -> Verdict:
        """decide() on the addresses this vet resolved, remembered: it is pure (the allowlist, the
        destination and the addresses make the verdict), so a destination asked for again -- every
        step of a roll -- is judged once. The addresses are part of the key: an answer of the
        resolver that differs is judged anew, and nothing skips the resolution."""
        if len(self._verdicts) >= VERDICTS_KEPT:
            self._verdicts = {}
        key = (dest, addresses)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = decide(self.config, dest, list(addresses))
        return verdict
