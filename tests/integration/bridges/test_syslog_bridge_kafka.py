"""The syslog bridge on the real Kafka: RFC 5424 over TCP (octet-counted) and RFC 3164 over UDP land
as events; garbage is counted, dead-lettered with its bytes, and the bridge keeps serving."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

from app.bridges.syslog import SOURCE, SyslogServer
from app.config import Settings
from tests.conftest import wait_until

from .conftest import read_dead_letters, read_events


def _port(server: SyslogServer, scheme: str) -> int:
    return next(address.port for address in server.bound if address.scheme == scheme)


def _octet_counted(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def test_syslog__tcp_and_udp_messages_land_and_garbage_goes_to_the_dlq(
        isolated_settings: Settings, start_syslog_bridge: Callable[..., SyslogServer]) -> None:
    server = start_syslog_bridge()
    host = f"h{uuid.uuid4().hex[:6]}"
    rfc5424 = [f"<165>1 2024-05-14T09:12:03.52Z {host}-a nginx 812 ID47 [origin@32473 ip=\"10.0.0.9\"] "
               f"upstream timed out".encode(),
               f"<11>1 2024-05-14T09:12:04Z {host}-a nginx 812 - - worker exited".encode()]
    with socket.create_connection(("127.0.0.1", _port(server, "tcp")), timeout=10) as tcp:
        tcp.sendall(b"".join(_octet_counted(message) for message in rfc5424))

    udp_address = ("127.0.0.1", _port(server, "udp"))
    garbage = b"<13>May 14 09:12:05 " + host.encode() + b"-b app: caf\xe9 \xff\xfe latin-1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(f"<12>May 14 09:12:05 {host}-b cron[42]: disk almost full".encode(), udp_address)
        udp.sendto(garbage, udp_address)
        wait_until(lambda: server.metrics.rejected_count(SOURCE, "not_utf8") == 1, timeout_s=30,
                   message="the non-UTF-8 datagram to be counted")
        udp.sendto(f"<14>May 14 09:12:06 {host}-b app: still serving".encode(), udp_address)
    wait_until(lambda: server.metrics.accepted_count(SOURCE) == 4, timeout_s=30, message="4 accepted messages")

    events = {(record["subject"], record["text"]): record for _, record in read_events(isolated_settings, expect=4)}
    assert set(events) == {(f"{host}-a", "upstream timed out"), (f"{host}-a", "worker exited"),
                           (f"{host}-b", "disk almost full"), (f"{host}-b", "still serving")}
    timed_out = events[(f"{host}-a", "upstream timed out")]
    assert (timed_out["name"], timed_out["tags"]["msgid"], timed_out["tags"]["origin.ip"]) == ("nginx", "ID47",
                                                                                                  "10.0.0.9")
    assert events[(f"{host}-a", "worker exited")]["severity"] == 2  # err
    disk = events[(f"{host}-b", "disk almost full")]
    assert (disk["name"], disk["tags"]["pid"], disk["severity"]) == ("cron", "42", 1)  # warning

    (letter,) = read_dead_letters(isolated_settings, expect=1)
    assert letter.value == garbage
    assert (letter.headers["vigil.source"], letter.headers["vigil.reason"]) == ("syslog/udp", "not_utf8")
    assert letter.headers["vigil.peer"] == "127.0.0.1" and "UTF-8" in letter.headers["vigil.error"]


def test_syslog__a_broken_tcp_frame_is_dead_lettered_and_the_connection_goes_on(
        isolated_settings: Settings, start_syslog_bridge: Callable[..., SyslogServer]) -> None:
    server = start_syslog_bridge(max_syslog_bytes=256)
    host = f"h{uuid.uuid4().hex[:6]}"
    oversized = _octet_counted(b"<13>1 - " + host.encode() + b" app - - - " + b"x" * 300)
    after = _octet_counted(f"<13>1 - {host} app - - - after the big one".encode())
    with socket.create_connection(("127.0.0.1", _port(server, "tcp")), timeout=10) as tcp:
        tcp.sendall(b"12x not a frame\n" + oversized + after)
        wait_until(lambda: server.metrics.accepted_count(SOURCE) == 1, timeout_s=30, message="the message after")

    ((_, event),) = read_events(isolated_settings, expect=1)
    assert (event["subject"], event["text"]) == (host, "after the big one")
    letters = read_dead_letters(isolated_settings, expect=2)
    assert [(letter.headers["vigil.source"], letter.headers["vigil.reason"]) for letter in letters] == [
        ("syslog/tcp", "bad_frame"), ("syslog/tcp", "oversized")]
    assert letters[0].value == b"12x not a frame"
    assert letters[1].value.startswith(oversized[:100]) and len(letters[1].value) <= len(oversized)


def test_syslog__network_devices_keep_their_names_and_partial_parses_land_tagged(
        isolated_settings: Settings, start_syslog_bridge: Callable[..., SyslogServer]) -> None:
    server = start_syslog_bridge()
    device = f"sw{uuid.uuid4().hex[:6]}"
    lines = [f"<190>2018 Apr 20 13:15:07 {device} %ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface Ethernet1/33 is down",
             f"<28>Jul  8 23:04:13  re0.{device} alarmd[2449]: Alarm set: FPC color=RED, class=CHASSIS",
             "<189>16261: *May 28 16:09:56.185: %SYS-5-CONFIG_I: Configured from console by admin"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for line in lines:
            udp.sendto(line.encode(), ("127.0.0.1", _port(server, "udp")))
    wait_until(lambda: server.metrics.accepted_count(SOURCE) == 3, timeout_s=30, message="3 accepted messages")

    by_text = {record["text"].split(":")[0]: record for _, record in read_events(isolated_settings, expect=3)}
    nxos, ios, junos = by_text["%ETHPORT-5-IF_DOWN_LINK_FAILURE"], by_text["%SYS-5-CONFIG_I"], by_text["Alarm set"]
    assert (nxos["subject"], nxos["tags"]["code"]) == (device, "ETHPORT-5-IF_DOWN_LINK_FAILURE")
    assert (junos["subject"], junos["name"], junos["tags"]["routing_engine"]) == (device, "alarmd", "re0")
    assert "vigil.parse" not in nxos["tags"] and "vigil.parse" not in junos["tags"]
    # IOS without `logging origin-id`: only the sender's address names it, and the event says so.
    assert ios["subject"] == "127.0.0.1"
    assert (ios["tags"]["vigil.parse"], ios["tags"]["vigil.parse.missing"]) == ("partial", "host")
    assert server.metrics.partial_count(SOURCE, "host") == 1
