"""The syslog bridge over real UDP and TCP sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest

from app.bridges.config import BridgeConfig
from app.bridges.sink import DeliveryCallback, MemorySink, SinkUnavailable
from app.bridges.syslog import SOURCE, SyslogServer
from app.model.events import Event

from .support import wait_until

LISTENS = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]


def _run(scenario: Callable[[SyslogServer, MemorySink], Awaitable[None]], sink: MemorySink | None = None,
         **config: object) -> MemorySink:
    sink = sink if sink is not None else MemorySink()

    async def main() -> None:
        server = SyslogServer(sink, LISTENS, BridgeConfig(syslog_listen=LISTENS, **config))  # type: ignore[arg-type]
        await server.start()
        try:
            await scenario(server, sink)
        finally:
            await server.stop()

    asyncio.run(main())
    return sink


def _port(server: SyslogServer, scheme: str) -> int:
    return next(a.port for a in server.bound if a.scheme == scheme)


def test_start__logs_readiness_with_the_bound_addresses(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        assert {a.scheme for a in server.bound} == {"udp", "tcp"}
        assert all(a.port > 0 for a in server.bound)

    with caplog.at_level(logging.INFO, logger="app.bridges"):
        _run(scenario)
    lines = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert len(lines) == 2
    assert any(line.startswith("syslog bridge listening on udp://127.0.0.1:") for line in lines)


def test_udp__bad_datagrams_are_counted_and_dropped_and_good_ones_still_arrive() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        port = _port(server, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"<13>Mar 19 10:00:00 h1 app: caf\xe9 latin-1", ("127.0.0.1", port))
            client.sendto(b"<13>Mar 19 10:00:00 h1 app: " + b"x" * 600, ("127.0.0.1", port))
            client.sendto(b"<192>bad pri", ("127.0.0.1", port))
            client.sendto(b"<187>134: *Mar  1 18:46:11.123: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down",
                          ("127.0.0.1", port))
        await wait_until(lambda: len(sink.events) == 1, sink=sink)
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "invalid") == 1, sink=sink)
        (event,) = sink.events
        assert (event.subject, event.tags["code"], event.severity) == ("127.0.0.1", "LINK-3-UPDOWN", 2)
        assert server.metrics.rejected_count(SOURCE, "not_utf8") == 1
        assert server.metrics.rejected_count(SOURCE, "oversized") == 1
        assert server.metrics.accepted_count(SOURCE) == 1

    _run(scenario, max_syslog_bytes=512)


def test_partial_parses__are_tagged_and_counted_and_relayed_devices_keep_their_names() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        port = _port(server, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            # Behind a relay: each device names itself, the relay's address is only the sender.
            client.sendto(b"<187>94307: gw2.acy1 LC/0/2/CPU0:Jul  7 20:16:14.834 : ifmgr[214]: "
                          b"%PKT_INFRA-LINK-3-UPDOWN : Interface TenGigE0/2/0/4, changed state to Down",
                          ("127.0.0.1", port))
            client.sendto(b"<165>Feb  6 09:42:36 veos01 Ebra: %LINEPROTO-5-UPDOWN: Line protocol on "
                          b"Interface Ethernet28, changed state to down", ("127.0.0.1", port))
            # No host, no time: the sender's address is the subject, and the event says so.
            client.sendto(b"<189>16261: %SYS-5-CONFIG_I: Configured from console", ("127.0.0.1", port))
        await wait_until(lambda: len(sink.events) == 3, sink=sink)
        by_subject = {e.subject: e for e in sink.events}
        assert set(by_subject) == {"gw2.acy1", "veos01", "127.0.0.1"}
        assert by_subject["gw2.acy1"].tags["sender"] == "127.0.0.1"
        assert "vigil.parse" not in by_subject["gw2.acy1"].tags
        assert (by_subject["veos01"].name, by_subject["veos01"].tags["code"]) == ("Ebra", "LINEPROTO-5-UPDOWN")
        bare = by_subject["127.0.0.1"].tags
        assert (bare["vigil.parse"], bare["vigil.parse.missing"]) == ("partial", "host,time")
        assert (server.metrics.partial_count(SOURCE, "host"), server.metrics.partial_count(SOURCE, "time"),
                server.metrics.partial_count(SOURCE, "program")) == (1, 1, 0)
        assert b'vigil_bridge_partial_total{field="host",source="syslog"} 1.0' in server.metrics.exposition()

    _run(scenario)


def test_tcp__mixed_framing_with_bad_frames_loses_nothing_valid() -> None:
    stream = (b"30 <13>1 - h1 app - - - first one"
              b"<13>Mar 19 10:00:00 h2 app: second\n"
              b"<13>Mar 19 10:00:00 h2 app: \xff not utf-8\n"
              b"700 " + b"y" * 700 +
              b"12abc\n"
              b"<14>Mar 19 10:00:00 h3 app: third key=value\r\n")

    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server, "tcp"))
        for start in range(0, len(stream), 13):  # arbitrary pieces, as TCP may deliver them
            writer.write(stream[start:start + 13])
            await writer.drain()
        await wait_until(lambda: len(sink.events) == 3, sink=sink)
        assert [(e.subject, e.text) for e in sink.events] == [
            ("h1", "first one"), ("h2", "second"), ("h3", "third key=value")]
        assert sink.events[2].tags["key"] == "value"

        writer.write(b"50 <13>cut short")  # the peer goes away mid-frame
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "truncated") == 1, sink=sink)
        counts = {reason: server.metrics.rejected_count(SOURCE, reason)
                  for reason in ("not_utf8", "oversized", "bad_frame", "truncated")}
        assert counts == {"not_utf8": 1, "oversized": 1, "bad_frame": 1, "truncated": 1}

        # The listener is still serving new connections.
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server, "tcp"))
        writer.write(b"<13>Mar 19 10:00:00 h4 app: after\n")
        await writer.drain()
        await wait_until(lambda: len(sink.events) == 4, sink=sink)
        writer.close()

    _run(scenario, max_syslog_bytes=512)


def test_dropped_messages__go_to_the_dead_letter_queue_with_source_reason_and_peer() -> None:
    not_utf8 = b"<13>Mar 19 10:00:00 h1 app: caf\xe9"
    oversized = b"<13>Mar 19 10:00:00 h1 app: " + b"x" * 600

    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(not_utf8, ("127.0.0.1", _port(server, "udp")))
        await wait_until(lambda: len(sink.dead_letters) == 1, sink=sink)
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server, "tcp"))
        writer.write(b"12abc\n" + b"%d " % len(oversized) + oversized + b"<13>Mar 19 10:00:00 h1 app: fine\n")
        await writer.drain()
        await wait_until(lambda: len(sink.events) == 1, sink=sink)
        writer.close()

        assert [(d.source, d.reason, d.peer) for d in sink.dead_letters] == [
            ("syslog/udp", "not_utf8", "127.0.0.1"), ("syslog/tcp", "bad_frame", "127.0.0.1"),
            ("syslog/tcp", "oversized", "127.0.0.1")]
        udp, bad_frame, too_big = sink.dead_letters
        assert udp.value == not_utf8 and "not valid UTF-8" in udp.detail
        assert bad_frame.value == b"12abc"
        assert too_big.value == b"%d " % len(oversized) + oversized[:512]
        assert f"{len(oversized)}-byte frame is over the 512-byte limit" in too_big.detail

    _run(scenario, max_syslog_bytes=512)


class _FlakySink(MemorySink):
    """A bus that fails: while `down`, send() raises SinkUnavailable; the first `undeliverable`
    records it takes are reported as not delivered (as Kafka does after message.timeout.ms)."""

    def __init__(self, *, down: bool = False, undeliverable: int = 0) -> None:
        super().__init__()
        self.down = down
        self.undeliverable = undeliverable
        self.lost: list[Event] = []

    def send(self, event: Event, *, on_delivery: DeliveryCallback | None = None) -> None:
        if self.down:
            self._notify()  # a waiting test re-checks its condition at every attempt
            raise SinkUnavailable("the producer queue is full (Kafka at 127.0.0.1:9092 is slow or unreachable)")
        if self.undeliverable > 0:
            self.undeliverable -= 1
            self.lost.append(event)
            if on_delivery is not None:
                on_delivery("delivery to events failed: Local: Message timed out")
            self._notify()
            return
        super().send(event, on_delivery=on_delivery)


def _send_udp(port: int, *texts: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for text in texts:
            client.sendto(f"<13>Mar 19 10:00:00 h1 app: {text}".encode(), ("127.0.0.1", port))


def test_events_kafka_refuses_later__are_kept_and_sent_again_never_dead_lettered() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        assert isinstance(sink, _FlakySink)
        _send_udp(_port(server, "udp"), "one", "two")
        await wait_until(lambda: [e.text for e in sink.events] == ["one", "two"], sink=sink)
        assert [e.text for e in sink.lost] == ["one"]  # the first attempt was lost, the retry arrived
        assert server.metrics.retried_count(SOURCE, "delivery_failed") == 1
        assert server.metrics.rejected_count(SOURCE, "delivery_failed") == 0
        assert sink.dead_letters == []  # the bus failed, not the input

    _run(scenario, sink=_FlakySink(undeliverable=1))


def test_while_the_bus_cannot_take_events__they_are_kept_in_order_and_sent_when_it_is_back() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        assert isinstance(sink, _FlakySink)
        _send_udp(_port(server, "udp"), "one", "two", "three")
        await wait_until(lambda: server.metrics.pending_count(SOURCE) == 3, sink=sink)
        assert sink.events == [] and server.metrics.accepted_count(SOURCE) == 3
        sink.down = False
        await wait_until(lambda: len(sink.events) == 3, sink=sink)
        assert [e.text for e in sink.events] == ["one", "two", "three"]
        assert server.metrics.pending_count(SOURCE) == 0
        assert server.metrics.retried_count(SOURCE, "sink_unavailable") == 1
        assert server.metrics.retried_count(SOURCE, "queued") == 2  # behind the first: order kept
        assert sink.dead_letters == []

    _run(scenario, sink=_FlakySink(down=True))


def test_the_retry_queue_is_bounded__the_oldest_are_dropped_and_counted() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        assert isinstance(sink, _FlakySink)
        _send_udp(_port(server, "udp"), "one", "two", "three")
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "retry_overflow") == 1, sink=sink)
        sink.down = False
        await wait_until(lambda: len(sink.events) == 2, sink=sink)
        assert [e.text for e in sink.events] == ["two", "three"]
        assert sink.dead_letters == []

    _run(scenario, sink=_FlakySink(down=True), syslog_retry_max_events=2)


def test_stop__counts_what_the_bus_never_took() -> None:
    async def main() -> None:
        sink = _FlakySink(down=True)
        server = SyslogServer(sink, ["udp://127.0.0.1:0"], stop_retry_s=0.2)
        await server.start()
        server.handle_message(b"<13>Mar 19 10:00:00 h1 app: one", peer="127.0.0.1")
        await server.stop()
        assert server.metrics.rejected_count(SOURCE, "undelivered_at_stop") == 1
        assert sink.flushes == 1

    asyncio.run(main())


def test_stop__closes_open_connections_and_flushes_the_sink() -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server, "tcp"))
        writer.write(b"<13>Mar 19 10:00:00 h1 app: one\n<13>Mar 19 10:00:00 h1 app: no newline yet")
        await writer.drain()
        await wait_until(lambda: len(sink.events) == 1, sink=sink)
        await server.stop()
        assert await reader.read() == b""  # the server closed the connection
        # The unterminated last line was delivered when the connection was closed.
        assert [e.text for e in sink.events] == ["one", "no newline yet"]
        writer.close()

    sink = _run(scenario)
    assert sink.flushes >= 1


def test_start__fails_cleanly_when_an_address_is_taken() -> None:
    async def main() -> None:
        first = SyslogServer(MemorySink(), ["tcp://127.0.0.1:0"])
        await first.start()
        try:
            taken = f"tcp://127.0.0.1:{first.bound[0].port}"
            second = SyslogServer(MemorySink(), ["udp://127.0.0.1:0", taken])
            with pytest.raises(OSError):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(main())


def test_no_listen_addresses__is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SyslogServer(MemorySink(), [])
