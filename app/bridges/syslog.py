"""The syslog bridge: asyncio UDP, TCP and TLS listeners that turn messages into events for a sink.

UDP: one message per datagram (RFC 5426). TCP: octet-counted or LF-delimited frames (RFC 6587),
decoded incrementally per connection. TLS (RFC 5425): the same framing inside TLS 1.2+, with the
certificate and key from files and, when a client CA is configured, client certificates required
(app.bridges.tls); a failed handshake is counted (`reason="tls_handshake"`) and nothing of that
connection is read. A message read only in part (no host, time or program in it) is still sent,
tagged `vigil.parse=partial`, and counted per missing field
(`vigil_bridge_partial_total{source="syslog",field=...}`). A message that cannot be used (not UTF-8, oversized,
truncated, unparseable) is dropped, counted by reason, logged and sent to the dead-letter topic
(its bytes, bounded, with headers naming `syslog/<udp|tcp|tls>`, the reason and the peer); the listener
keeps serving and the other messages of the same datagram stream or connection are unaffected. A
flood of such messages is rate-limited per transport and reason (app.bridges.dead_letters): past the
limit they are counted and summarised in the dead-letter topic, not written one by one.

Valid messages are never dropped for a Kafka or schema registry outage, and never dead-lettered:
nobody could be told to resend (UDP has no answer), so an event the sink cannot take now
(SinkUnavailable) or that Kafka did not acknowledge is kept in memory (newer events queue behind
it, so order is kept) and sent again with jittered exponential backoff until the bus takes it,
counted in `vigil_bridge_retried_total` and `vigil_bridge_retry_pending`. The queue is bounded
(`syslog_retry_max_events`): past it the oldest are dropped, counted as `retry_overflow`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from functools import partial
from typing import Any

from app.bridges.config import SYSLOG_SCHEMES, BridgeConfig, ListenAddress, parse_listen
from app.bridges.dead_letters import DeadLetterGate
from app.bridges.errors import ParseError
from app.bridges.metrics import BridgeMetrics
from app.bridges.parsers._common import missing_fields
from app.bridges.parsers.syslog import parse_syslog
from app.bridges.parsers.syslog_framing import FrameError, SyslogFrameDecoder
from app.bridges.retry_queue import RetryQueue
from app.bridges.sink import EventSink, SinkUnavailable
from app.bridges.tls import server_context
from app.model.events import Event
from app.retry import Backoff

__all__ = ["SOURCE", "SyslogServer"]

log = logging.getLogger(__name__)

#: Metrics label of this bridge.
SOURCE = "syslog"
_READ_CHUNK_BYTES = 65_536
#: Backoff ceilings between resends while the bus cannot take events (full jitter below them).
_RETRY_INITIAL_S = 0.5
_RETRY_MAX_S = 30.0
#: A TLS client that has not finished its handshake by then is dropped (it holds a connection).
_TLS_HANDSHAKE_TIMEOUT_S = 10.0


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.handle_message(data, peer=str(addr[0]), transport="udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and the like: nothing was received, nothing to count.
        log.debug("syslog udp socket error: %s", exc)


class SyslogServer:
    """Listens on `udp://`, `tcp://` and `tls://HOST:PORT` addresses (port 0 picks a free port)."""

    def __init__(self, sink: EventSink, listens: list[str], config: BridgeConfig | None = None, *,
                 metrics: BridgeMetrics | None = None, stop_retry_s: float = 10.0,
                 dead_letters: DeadLetterGate | None = None) -> None:
        if not listens:
            raise ValueError("give at least one udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT to listen on")
        self.sink = sink
        self.config = config or BridgeConfig()
        self.addresses = [parse_listen(item, schemes=SYSLOG_SCHEMES) for item in listens]
        self.metrics = metrics or BridgeMetrics(log)
        #: the rate-limited way to the dead-letter topic
        self.dead_letters = dead_letters or DeadLetterGate(sink, self.config.dead_letters)
        self.metrics.registry.register(self.dead_letters.limiter.collector())
        self.max_message_bytes = self.config.max_syslog_bytes
        #: The addresses actually bound (ephemeral ports resolved), filled by start().
        self.bound: list[ListenAddress] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        #: events the bus could not take yet, oldest first (see the module docstring)
        self.pending: RetryQueue[Event] = RetryQueue(self.config.syslog_retry_max_events)
        self.stop_retry_s = stop_retry_s
        self._backoff = Backoff(_RETRY_INITIAL_S, _RETRY_MAX_S)
        self._outage_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kept = asyncio.Event()
        self._retrier: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind every address; log readiness ("syslog bridge listening on udp://...")."""
        tls = self._tls_context() if any(a.scheme == "tls" for a in self.addresses) else None  # before any task
        loop = self._loop = asyncio.get_running_loop()
        self._retrier = loop.create_task(self._retry_loop(), name="syslog-retry")
        self.dead_letters.start()
        try:
            for address in self.addresses:
                if address.scheme == "udp":
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpProtocol(self), local_addr=(address.host, address.port))
                    self._udp.append(transport)
                    sockets = [transport.get_extra_info("socket")]
                else:
                    serve = partial(self._serve_tcp, tls=tls if address.scheme == "tls" else None)
                    server = await asyncio.start_server(serve, address.host, address.port, limit=_READ_CHUNK_BYTES)
                    self._tcp.append(server)
                    sockets = list(server.sockets)
                for sock in sockets:
                    bound = _bound_address(address.scheme, sock)
                    self.bound.append(bound)
                    log.info("syslog bridge listening on %s", bound)
        except OSError:
            await self.stop()
            raise

    def _tls_context(self) -> ssl.SSLContext:
        files = self.config.syslog_tls
        if files is None:
            raise ValueError("a tls:// listener needs the certificate and key (syslog_tls_cert, syslog_tls_key)")
        return server_context(files)

    async def stop(self) -> None:
        """Stop listening, close open connections (finishing their frames), send what is kept for
        retry (for up to `stop_retry_s`; the rest is counted and logged), flush the sink."""
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
        if self._retrier is not None:
            self._retrier.cancel()
            await asyncio.gather(self._retrier, return_exceptions=True)
            self._retrier = None
        await self._resend_for(self.stop_retry_s)
        left = len(self.pending)
        if left:
            self.metrics.rejected(SOURCE, "undelivered_at_stop", f"{left} event(s) kept for retry were never "
                                  f"taken by the bus", count=left)
            log.error("stopping with %d syslog event(s) the bus never took (Kafka or the schema registry "
                      "unavailable)", left)
        await self.dead_letters.stop()  # the last summaries, before the flush
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
        if len(self.pending):
            self._keep(event, "queued", None)  # behind the older ones: order is kept
        else:
            try:
                problem = self._hand_over(event)
            except Exception as exc:  # the event itself was refused (it does not encode): count, go on serving
                self.metrics.rejected(SOURCE, "sink_error", f"from {peer}: {exc}")  # logged there, rate-limited
                return False
            if problem is not None:
                self._keep(event, "sink_unavailable", problem)
        self.metrics.accepted(SOURCE)
        self.metrics.partial(SOURCE, missing_fields(event))
        return True

    def _hand_over(self, event: Event) -> str | None:
        """Give an event to the sink: None when it took it, else why the bus cannot take it now.
        Other sink errors (the event is refused) are raised."""
        try:
            self.sink.send(event, on_delivery=partial(self._delivery_report, event))
        except SinkUnavailable as exc:
            return str(exc)
        return None

    def _delivery_report(self, event: Event, error: str | None) -> None:
        # Called from the sink's thread: the queue and the counters are thread-safe.
        if error is not None:
            self._keep(event, "delivery_failed", error)
        elif self._outage_since is not None:  # the bus delivers again: the outage is over
            outage_s, self._outage_since = time.monotonic() - self._outage_since, None
            log.warning("the bus takes syslog events again (after %.0fs); %d kept event(s) left to resend",
                        outage_s, len(self.pending))

    def _keep(self, event: Event, reason: str, problem: str | None) -> None:
        """Keep an event for another try (thread-safe); the first problem of an outage is logged."""
        dropped = self.pending.push(event)
        self.metrics.retried(SOURCE, reason)
        if dropped:
            self._overflowed(dropped)
        self.metrics.set_pending(SOURCE, len(self.pending))
        if problem is not None and self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("the bus cannot take syslog events (%s): keeping them in memory (up to %d) and "
                        "retrying", problem, self.pending.max_items)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._kept.set)
            except RuntimeError:  # the loop is closed: stop() is over, nothing would retry
                pass

    def _overflowed(self, dropped: int) -> None:
        self.metrics.rejected(SOURCE, "retry_overflow", f"retry queue full ({self.pending.max_items} events, "
                              f"VIGIL_BRIDGE_SYSLOG_RETRY_MAX_EVENTS): dropped the oldest", count=dropped)

    async def _retry_loop(self) -> None:
        """Resend kept events whenever there are some, backing off until the bus delivers again."""
        while True:
            await self._kept.wait()
            self._kept.clear()
            while len(self.pending):
                if self._outage_since is None:  # a delivery succeeded since the last round
                    self._backoff.reset()
                await asyncio.sleep(self._backoff.next_delay_s())
                await self._resend()

    async def _resend(self) -> bool:
        """Send the events kept now, oldest first, until the sink cannot take one (it goes back to
        the head of the queue); True when it took them all. (Those that fail again later are kept
        again, behind: one round never loops over its own failures.)"""
        sent = 0
        for _ in range(len(self.pending)):
            event = self.pending.pop()
            if event is None:
                break
            try:
                problem = self._hand_over(event)
            except Exception as exc:  # the event itself was refused: count and go on
                self.metrics.rejected(SOURCE, "sink_error", f"resending: {exc}")
                continue
            if problem is not None:
                dropped = self.pending.push_front(event)
                if dropped:
                    self._overflowed(dropped)
                self.metrics.set_pending(SOURCE, len(self.pending))
                return False
            sent += 1
            if sent % 1000 == 0:
                await asyncio.sleep(0)  # a long queue must not stall the listeners
        self.metrics.set_pending(SOURCE, len(self.pending))
        return True

    async def _resend_for(self, seconds: float) -> None:
        """At stop: resend what is kept, with backoff, for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while len(self.pending) and not await self._resend():
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return
            await asyncio.sleep(min(self._backoff.next_delay_s(), left_s))

    def _drop(self, reason: str, detail: str, raw: bytes, peer: str | None, transport: str) -> bool:
        self.metrics.rejected(SOURCE, reason, detail)
        self.dead_letters.send(f"{SOURCE}/{transport}", reason, raw, detail=detail, peer=peer)
        return False

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                         tls: ssl.SSLContext | None = None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._writers.add(writer)
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if peer_info else None
        transport = "tcp" if tls is None else "tls"
        decoder = SyslogFrameDecoder(self.max_message_bytes)
        try:
            if tls is not None and not await self._handshake(writer, tls, peer):
                return
            while True:
                try:
                    data = await reader.read(_READ_CHUNK_BYTES)
                except (ConnectionError, OSError) as exc:
                    log.debug("syslog tcp connection from %s failed: %s", peer, exc)
                    break
                if not data:
                    break
                self._handle_frames(decoder.feed(data), peer, transport)
            self._handle_frames(decoder.close(), peer, transport)
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _handshake(self, writer: asyncio.StreamWriter, tls: ssl.SSLContext, peer: str | None) -> bool:
        """Upgrade the connection to TLS; False (counted, logged) when the handshake fails."""
        try:
            await writer.start_tls(tls, ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT_S)
        except OSError as exc:  # ssl.SSLError, a reset or closed connection, the handshake timeout
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self.metrics.rejected(SOURCE, "tls_handshake", f"from {peer}: TLS handshake failed: {reason}")
            return False
        return True

    def _handle_frames(self, frames: list[bytes | FrameError], peer: str | None, transport: str) -> None:
        for frame in frames:
            if isinstance(frame, FrameError):
                self._drop(frame.reason, f"from {peer}: {frame.detail}", frame.raw, peer, transport)
            else:
                self.handle_message(frame, peer=peer, transport=transport)


def _bound_address(scheme: str, sock: socket.socket) -> ListenAddress:
    host, port = sock.getsockname()[:2]
    return ListenAddress(scheme=scheme, host=str(host), port=int(port))
