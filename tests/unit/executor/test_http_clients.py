"""HTTP clients kept between requests: one per pinned origin (scheme, vetted address, port, TLS
name), so connections are reused only for the same address and the same checked name."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx

from app.executor.allowlist import OutboundConfig
from app.executor.egress import EgressGuard
from app.executor.http_clients import PinnedClients, PinnedOrigin, pinned_origin
from app.executor.safe_http import request

LOOPBACK = ipaddress.ip_address("127.0.0.1")


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
        assert first.client.is_closed
        clients.release(second)
        clients.release(second)
        await clients.aclose()
        assert second.client.is_closed

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
        guard = EgressGuard(OutboundConfig.model_validate(
            {"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http"], "ports": ["*"]}]}),
            clients=PinnedClients())
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
