"""The syslog bridge: asyncio UDP and TCP listeners that turn messages into events for a sink.

UDP: one message per datagram (RFC 5426). TCP: octet-counted or LF-delimited frames (RFC 6587),
decoded incrementally per connection. A message read only in part (no host, time or program in it)
is still sent, tagged `vigil.parse=partial`, and counted per missing field
(`vigil_bridge_partial_total{source="syslog",field=...}`). A message that cannot be used (not UTF-8, oversized,
truncated, unparseable) is dropped, counted by reason, logged and sent to the dead-letter topic
(its bytes, bounded, with headers naming `syslog/<udp|tcp>`, the reason and the peer); the listener
keeps serving and the other messages of the same datagram stream or connection are unaffected.
Events are not waited for (nobody could be told); records Kafka refuses later are counted as
`delivery_failed`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from app.bridges.config import BridgeConfig, ListenAddress, parse_listen
from app.bridges.errors import ParseError
from app.bridges.metrics import BridgeMetrics
from app.bridges.parsers._common import missing_fields
from app.bridges.parsers.syslog import parse_syslog
from app.bridges.parsers.syslog_framing import FrameError, SyslogFrameDecoder
from app.bridges.sink import EventSink

__all__ = ["SOURCE", "SyslogServer"]

log = logging.getLogger(__name__)

#: Metrics label of this bridge.
SOURCE = "syslog"
_READ_CHUNK_BYTES = 65_536


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.handle_message(data, peer=str(addr[0]), transport="udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and the like: nothing was received, nothing to count.
        log.debug("syslog udp socket error: %s", exc)


class SyslogServer:
    """Listens on `udp://HOST:PORT` and `tcp://HOST:PORT` addresses (port 0 picks a free port)."""

    def __init__(self, sink: EventSink, listens: list[str], config: BridgeConfig | None = None, *,
                 metrics: BridgeMetrics | None = None) -> None:
        if not listens:
            raise ValueError("give at least one udp://HOST:PORT or tcp://HOST:PORT to listen on")
        self.sink = sink
        self.config = config or BridgeConfig()
        self.addresses = [parse_listen(item, schemes=("udp", "tcp")) for item in listens]
        self.metrics = metrics or BridgeMetrics(log)
        self.max_message_bytes = self.config.max_syslog_bytes
        #: The addresses actually bound (ephemeral ports resolved), filled by start().
        self.bound: list[ListenAddress] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Bind every address; log readiness ("syslog bridge listening on udp://...")."""
        loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                if address.scheme == "udp":
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpProtocol(self), local_addr=(address.host, address.port))
                    self._udp.append(transport)
                    sockets = [transport.get_extra_info("socket")]
                else:
                    server = await asyncio.start_server(self._serve_tcp, address.host, address.port,
                                                        limit=_READ_CHUNK_BYTES)
                    self._tcp.append(server)
                    sockets = list(server.sockets)
                for sock in sockets:
                    bound = _bound_address(address.scheme, sock)
                    self.bound.append(bound)
                    log.info("syslog bridge listening on %s", bound)
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening, close open connections (finishing their frames), flush the sink."""
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        for writer in list(self._writers):
            writer.close()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._tcp:
            await server.wait_closed()
        self._udp.clear()
        self._tcp.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.sink.flush)

    def handle_message(self, data: bytes, *, peer: str | None, transport: str = "udp") -> bool:
        """Parse one message and send its event; False (counted, logged, dead-lettered) if it was dropped."""
        if len(data) > self.max_message_bytes:
            return self._drop("oversized", f"{len(data)}-byte message from {peer} is over the "
                                           f"{self.max_message_bytes}-byte limit", data, peer, transport)
        try:
            event = parse_syslog(data, source_host=peer)
        except ParseError as exc:
            return self._drop(exc.kind, f"from {peer}: {exc} (message starts {data[:60]!r})", data, peer, transport)
        try:
            self.sink.send(event, on_delivery=self._delivery_report)
        except Exception as exc:  # the bus refused it (whatever the sink raises): count and go on serving
            self.metrics.rejected(SOURCE, "sink_error", f"from {peer}: {exc}")  # logged there, rate-limited
            return False
        self.metrics.accepted(SOURCE)
        self.metrics.partial(SOURCE, missing_fields(event))
        return True

    def _delivery_report(self, error: str | None) -> None:
        # Called from the sink's thread; the counters are thread-safe.
        if error is not None:
            self.metrics.rejected(SOURCE, "delivery_failed", error)

    def _drop(self, reason: str, detail: str, raw: bytes, peer: str | None, transport: str) -> bool:
        self.metrics.rejected(SOURCE, reason, detail)
        self.sink.dead_letter(f"{SOURCE}/{transport}", reason, raw, detail=detail, peer=peer)
        return False

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._writers.add(writer)
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if peer_info else None
        decoder = SyslogFrameDecoder(self.max_message_bytes)
        try:
            while True:
                try:
                    data = await reader.read(_READ_CHUNK_BYTES)
                except (ConnectionError, OSError) as exc:
                    log.debug("syslog tcp connection from %s failed: %s", peer, exc)
                    break
                if not data:
                    break
                self._handle_frames(decoder.feed(data), peer)
            self._handle_frames(decoder.close(), peer)
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._connections.discard(task)

    def _handle_frames(self, frames: list[bytes | FrameError], peer: str | None) -> None:
        for frame in frames:
            if isinstance(frame, FrameError):
                self._drop(frame.reason, f"from {peer}: {frame.detail}", frame.raw, peer, "tcp")
            else:
                self.handle_message(frame, peer=peer, transport="tcp")


def _bound_address(scheme: str, sock: socket.socket) -> ListenAddress:
    host, port = sock.getsockname()[:2]
    return ListenAddress(scheme=scheme, host=str(host), port=int(port))
