"""Syslog over TLS (RFC 5425) on 127.0.0.1, with throwaway certificates made in the test: real TLS
clients (Python's ssl, and `openssl s_client` when installed) send octet-counted and LF frames;
client certificates are required when a client CA is configured."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from app.bridges.config import BridgeConfig, load_bridge_config
from app.bridges.sink import MemorySink
from app.bridges.syslog import SOURCE, SyslogServer
from app.bridges.tls import TlsFiles, server_context
from app.config import ConfigError
from tests.tls import Issued, TestPki

from .support import wait_until

LISTEN = "tls://127.0.0.1:0"
NAME = "syslog.test"


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
def server_cert(pki: TestPki) -> Issued:
    return pki.issue("bridge", dns=[NAME], ips=["127.0.0.1"])


def _run(scenario: Callable[[SyslogServer, MemorySink], Awaitable[None]], config: BridgeConfig) -> MemorySink:
    sink = MemorySink()

    async def main() -> None:
        server = SyslogServer(sink, config.syslog_listen, config)
        await server.start()
        try:
            await scenario(server, sink)
        finally:
            await server.stop()

    asyncio.run(main())
    return sink


def _config(cert: Issued, client_ca: Path | None = None, **more: object) -> BridgeConfig:
    return BridgeConfig(syslog_listen=[LISTEN], syslog_tls_cert=cert.cert_file, syslog_tls_key=cert.key_file,
                        syslog_tls_client_ca=client_ca, **more)  # type: ignore[arg-type]


def _client_context(pki: TestPki, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca_file)
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    return context


def _port(server: SyslogServer) -> int:
    return next(a.port for a in server.bound if a.scheme == "tls")


async def _send(server: SyslogServer, context: ssl.SSLContext, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", _port(server), ssl=context, server_hostname=NAME)
    try:
        for start in range(0, len(data), 11):  # arbitrary pieces, as TCP may deliver them
            writer.write(data[start:start + 11])
            await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass  # the server refused us (the cases that test it look at what the server did)


def test_tls__octet_counted_and_lf_frames_like_tcp(pki, server_cert) -> None:
    stream = (b"30 <13>1 - h1 app - - - first one"
              b"<13>Mar 19 10:00:00 h2 app: second\n"
              b"12abc\n"
              b"<14>Mar 19 10:00:00 h3 app: third\r\n"
              b"<14>Mar 19 10:00:00 h4 app: last, without LF")

    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        assert [a.scheme for a in server.bound] == ["tls"]
        await _send(server, _client_context(pki), stream)
        await wait_until(lambda: len(sink.events) == 4, sink=sink)
        assert [(e.subject, e.text) for e in sink.events] == [
            ("h1", "first one"), ("h2", "second"), ("h3", "third"), ("h4", "last, without LF")]
        assert [(d.source, d.reason, d.value) for d in sink.dead_letters] == [("syslog/tls", "bad_frame", b"12abc")]

    _run(scenario, _config(server_cert))


def test_tls__client_certificate_required_when_a_client_ca_is_set(pki, server_cert, tmp_path: Path) -> None:
    good_client = pki.issue("device", client=True)
    other_pki = TestPki(tmp_path / "other", ca_name="someone else's CA")
    stranger = other_pki.issue("stranger", client=True)
    message = b"<13>Mar 19 10:00:00 h1 app: hello\n"

    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        await _send(server, _client_context(pki), b"<13>Mar 19 10:00:00 nocert app: no certificate\n")
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "tls_handshake") == 1, sink=sink)
        await _send(server, _client_context(pki, stranger), b"<13>Mar 19 10:00:00 stranger app: other CA\n")
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "tls_handshake") == 2, sink=sink)
        await _send(server, _client_context(pki, good_client), message)
        await wait_until(lambda: len(sink.events) == 1, sink=sink)
        assert [e.subject for e in sink.events] == ["h1"], "only the client with a certificate of the CA got in"
        assert sink.dead_letters == [], "a refused connection sends nothing anywhere"

    _run(scenario, _config(server_cert, client_ca=pki.ca_file))


def test_tls__plain_text_on_the_tls_port_is_refused_and_counted(pki, server_cert) -> None:
    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"<13>Mar 19 10:00:00 h1 app: in clear text\n")
        await writer.drain()
        await wait_until(lambda: server.metrics.rejected_count(SOURCE, "tls_handshake") == 1, sink=sink)
        writer.close()
        assert sink.events == [] and sink.dead_letters == []
        await _send(server, _client_context(pki), b"<13>Mar 19 10:00:00 h2 app: still serving\n")
        await wait_until(lambda: len(sink.events) == 1, sink=sink)

    _run(scenario, _config(server_cert))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls__openssl_s_client_with_a_client_certificate(pki, server_cert) -> None:
    client = pki.issue("device", client=True)

    async def scenario(server: SyslogServer, sink: MemorySink) -> None:
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{_port(server)}", "-servername", NAME,
                "-CAfile", str(pki.ca_file), "-verify_return_error", "-cert", str(client.cert_file),
                "-key", str(client.key_file), "-quiet", "-no_ign_eof"]
        message = b"<13>Mar 19 10:00:00 h9 app: via openssl\n"
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            proc.stdin.write(message)
            await proc.stdin.drain()
            await wait_until(lambda: len(sink.events) == 1, sink=sink)
            proc.stdin.close()  # EOF: s_client closes the connection and exits
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert [(e.subject, e.text) for e in sink.events] == [("h9", "via openssl")]

    _run(scenario, _config(server_cert, client_ca=pki.ca_file))


def test_config__tls_listener_needs_certificate_and_key() -> None:
    with pytest.raises(ConfigError, match="needs a certificate and key"):
        load_bridge_config({"VIGIL_BRIDGE_SYSLOG_LISTEN": LISTEN})


def test_config__tls_files_from_the_environment(server_cert, pki) -> None:
    config = load_bridge_config({"VIGIL_BRIDGE_SYSLOG_LISTEN": "tcp://127.0.0.1:0, tls://127.0.0.1:0",
                                 "VIGIL_BRIDGE_SYSLOG_TLS_CERT": str(server_cert.cert_file),
                                 "VIGIL_BRIDGE_SYSLOG_TLS_KEY": str(server_cert.key_file),
                                 "VIGIL_BRIDGE_SYSLOG_TLS_CLIENT_CA": str(pki.ca_file)})
    assert config.syslog_tls == TlsFiles(server_cert.cert_file, server_cert.key_file, pki.ca_file)
    assert server_context(config.syslog_tls).verify_mode == ssl.CERT_REQUIRED


def test_server_context__names_the_file_that_is_wrong(server_cert, pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        server_context(TlsFiles(tmp_path / "missing.crt", server_cert.key_file))
    other = pki.issue("other", dns=["x.test"])
    with pytest.raises(ConfigError, match="the key must belong to the certificate"):
        server_context(TlsFiles(server_cert.cert_file, other.key_file))
    with pytest.raises(ConfigError, match="client CA bundle"):
        server_context(TlsFiles(server_cert.cert_file, server_cert.key_file, tmp_path / "nope.pem"))
