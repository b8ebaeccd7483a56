"""HTTP clients kept between requests: one per pinned origin (scheme, vetted address, port, TLS
name), so connections are reused only for the same address and the same checked name."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import httpx
import pytest

from app.executor.allowlist import OutboundConfig
from app.executor.egress import EgressGuard, EgressRefused
from app.executor.http_clients import PinnedClients, PinnedOrigin, pinned_origin
from app.executor.plugin import ActionRejected, ActionTimedOut
from app.executor.safe_http import request

_T = TypeVar("_T")

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _loopback_guard() -> EgressGuard:
    """A guard that allows http to 127.0.0.1 on any port, keeping its clients between requests."""
    return EgressGuard(OutboundConfig.model_validate(
        {"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http"], "ports": ["*"]}]}),
        clients=PinnedClients())


def test_pinned_origin__keeps_the_tls_name_apart_per_destination() -> None:
    a = pinned_origin(httpx.URL("https://api.test:8443/x"), LOOPBACK)
    b = pinned_origin(httpx.URL("https://other.test:8443/y"), LOOPBACK)
    assert a == PinnedOrigin("https", "127.0.0.1", 8443, "api.test")
    assert a != b, "the same address under another name never shares a TLS connection"
    assert pinned_origin(httpx.URL("https://api.test/z"), LOOPBACK).port == 443
    assert pinned_origin(httpx.URL("http://api.test/x"), LOOPBACK) == PinnedOrigin("http", "127.0.0.1", 80, "")
    assert pinned_origin(httpx.URL("https://127.0.0.1:9/x"), LOOPBACK).server_name == "", "a literal: no SNI"


def test_pinned_clients__one_client_per_origin_and_only_idle_ones_are_closed_beyond_the_limit() -> None:
    async def scenario() -> None:
        clients = PinnedClients(max_clients=1)
        one, two = PinnedOrigin("http", "127.0.0.1", 80, ""), PinnedOrigin("http", "127.0.0.2", 80, "")
        first = clients.lease(one)
        assert clients.lease(one) is first
        second = clients.lease(two)
        assert len(clients) == 2, "both are in use: neither is closed"
        clients.release(first)
        clients.release(first)
        assert len(clients) == 1 and clients.lease(two) is second, "the idle one went, the busy one stayed"
        await asyncio.sleep(0)  # the closing task runs
        assert first.client.closed
        clients.release(second)
        clients.release(second)
        await clients.aclose()
        assert second.client.closed

    asyncio.run(scenario())


def test_pinned_clients__a_busy_origin_is_spread_over_several_clients() -> None:
    async def scenario() -> None:
        clients = PinnedClients(requests_per_client=2)
        origin = PinnedOrigin("http", "127.0.0.1", 80, "")
        a, b, c = (clients.lease(origin) for _ in range(3))
        assert a is b and c is not a and len(clients) == 2
        clients.release(a)
        assert clients.lease(origin) is a, "a client with room is used before another is made"
        for lease in (a, b, c):
            clients.release(lease)
        await clients.aclose()

    asyncio.run(scenario())


def test_request__reuses_the_connection_to_the_same_destination() -> None:
    async def scenario() -> tuple[int, list[int]]:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                while await reader.readuntil(b"\r\n\r\n"):  # requests without a body (GET)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()  # the client closed the connection

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        guard = _loopback_guard()
        try:
            statuses = [(await request(guard, "GET", f"http://127.0.0.1:{port}/{i}", timeout_s=5)).status
                        for i in range(3)]
        finally:
            assert guard.clients is not None
            await guard.clients.aclose()
            server.close()
        return connections, statuses

    connections, statuses = asyncio.run(scenario())
    assert statuses == [200, 200, 200] and connections == 1


def test_request__a_cookie_one_answer_sets_is_not_sent_with_the_next_request() -> None:
    """The kept clients serve many actions (and, for http, every name on an address): no cookie jar."""
    async def scenario() -> list[str]:
        cookies: list[str] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while head := await reader.readuntil(b"\r\n\r\n"):
                    cookies.extend(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                                   if line.lower().startswith("cookie:"))
                    writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=secret; Path=/\r\n"
                                 b"Content-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        guard = _loopback_guard()
        try:
            for i in range(2):
                assert (await request(guard, "GET", f"http://127.0.0.1:{port}/{i}", timeout_s=5)).status == 200
        finally:
            assert guard.clients is not None
            await guard.clients.aclose()
            server.close()
        return cookies

    assert asyncio.run(scenario()) == []


def test_vet__a_resolver_answer_that_changes_is_judged_anew() -> None:
    """The guard remembers verdicts per (destination, addresses): the same name resolving elsewhere
    is judged again, never let through on an earlier verdict."""
    answers = [["127.0.0.1"], ["127.0.0.2"], ["127.0.0.1"]]

    async def resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address(a) for a in answers.pop(0)]

    async def scenario() -> list[bool]:
        guard = EgressGuard(OutboundConfig.model_validate(
            {"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http"], "ports": ["*"]}]}), resolver=resolver)
        allowed = []
        for _ in range(3):
            try:
                await guard.vet("http", "api.test", 8080)
                allowed.append(True)
            except EgressRefused:
                allowed.append(False)
        return allowed

    assert asyncio.run(scenario()) == [True, False, True]


async def _serve_once(handle: Callable[[bytes, asyncio.StreamWriter], Awaitable[None]],
                      use: Callable[[int], Awaitable[_T]]) -> _T:
    """A loopback server whose connections get `handle(request head, writer)` per request, while
    `use(port)` runs."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await handle(head + await reader.readexactly(length), writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        return await use(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def test_request__a_body_without_a_type_gets_none_made_up() -> None:
    """A body given as bytes goes as it is: no Content-Type unless the action gave one."""
    seen: list[bytes] = []

    async def answer(request_bytes: bytes, writer: asyncio.StreamWriter) -> None:
        seen.append(request_bytes)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def use(port: int) -> None:
        guard = _loopback_guard()
        try:
            await request(guard, "POST", f"http://127.0.0.1:{port}/a", content=b"raw", timeout_s=5)
            await request(guard, "POST", f"http://127.0.0.1:{port}/b", content=b"<x/>", timeout_s=5,
                          headers={"Content-Type": "application/xml"})
        finally:
            assert guard.clients is not None
            await guard.clients.aclose()

    asyncio.run(_serve_once(answer, use))
    first, second = (raw.lower() for raw in seen)
    assert b"content-type" not in first and first.endswith(b"\r\n\r\nraw")
    assert b"content-type: application/xml" in second


def test_request__no_answer_within_the_timeout_is_timed_out() -> None:
    async def never(request_bytes: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # holds the request; closed with the server

    async def use(port: int) -> str:
        guard = _loopback_guard()
        try:
            await request(guard, "GET", f"http://127.0.0.1:{port}/slow", timeout_s=0.2)
        except ActionTimedOut as exc:
            return str(exc)
        finally:
            assert guard.clients is not None
            await guard.clients.aclose()
        return "answered"

    assert asyncio.run(_serve_once(never, use)).startswith("GET http://127.0.0.1:")


def test_pinned_clients__never_resolve_a_name() -> None:
    """The kept clients are only given vetted addresses: a name reaching them is refused, not looked up."""
    async def scenario() -> None:
        clients = PinnedClients()
        lease = clients.lease(PinnedOrigin("http", "127.0.0.1", 80, ""))
        try:
            with pytest.raises(aiohttp.ClientConnectorError, match="vetted addresses only"):
                await lease.client.get("http://localhost:1/")
        finally:
            clients.release(lease)
            await clients.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(("headers", "error"), [
    ({"X-A": "a\r\nInjected: 1"}, "the value of header X-A holds a control or non-ASCII character"),
    ({"X-A": "caf\u00e9"}, "the value of header X-A holds a control or non-ASCII character"),
    ({"Bad Name": "v"}, "header name 'Bad Name' is not valid in HTTP"),
])
def test_request__a_header_that_is_not_valid_http_is_rejected_before_anything_is_sent(headers, error) -> None:
    async def scenario() -> str:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        guard = _loopback_guard()
        try:
            await request(guard, "GET", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", headers=headers,
                          timeout_s=5)
        except ActionRejected as exc:
            assert connections == 0
            return str(exc)
        finally:
            assert guard.clients is not None
            await guard.clients.aclose()
            server.close()
        return "sent"

    assert asyncio.run(scenario()).startswith(error)
