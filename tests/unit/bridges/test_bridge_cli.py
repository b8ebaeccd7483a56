"""`vigil bridge http|syslog`: option handling, sink factory, and the serve loops (stopped by an event)."""

from __future__ import annotations

import asyncio
import socket
import sys

import aiohttp
import click
import pytest
from click.testing import CliRunner

from app.bridges.cli import make_bridge_group, serve_http, serve_syslog
from app.bridges.config import BridgeConfig
from app.bridges.sink import MemorySink, SinkUnavailable
from app.config import Settings

from .support import wait_until


def test_group__offers_http_and_syslog_with_listen_options() -> None:
    runner = CliRunner()
    result = runner.invoke(make_bridge_group(lambda settings: MemorySink()), ["--help"])
    assert result.exit_code == 0 and "http" in result.output and "syslog" in result.output
    for command in ("http", "syslog"):
        result = runner.invoke(make_bridge_group(lambda settings: MemorySink()), [command, "--help"])
        assert result.exit_code == 0 and "--listen" in result.output


@pytest.mark.parametrize(("args", "words"), [
    (["http", "--listen", "nowhere"], "http_listen"),
    (["syslog", "--listen", "http://127.0.0.1:1"], "syslog_listen"),
    (["syslog", "--listen", "tls://127.0.0.1:0"], "needs a certificate and key"),
])
def test_bad_listen_address__is_a_clear_error_before_anything_starts(args: list[str], words: str) -> None:
    built: list[Settings] = []
    result = CliRunner().invoke(make_bridge_group(lambda settings: built.append(settings) or MemorySink()), args,
                                obj=Settings())
    assert result.exit_code != 0
    assert words in result.output
    assert built == []


def test_default_sink_factory__explains_a_missing_kafka_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "app.bridges.kafka_sink", None)  # import fails as if absent
    result = CliRunner().invoke(make_bridge_group(), ["http", "--listen", "127.0.0.1:0"], obj=Settings())
    assert result.exit_code != 0
    assert "Kafka sink is not available" in result.output


def test_serve_http__serves_until_stopped_then_flushes() -> None:
    sink = MemorySink()

    async def main() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_http(sink, BridgeConfig(http_listen="127.0.0.1:0"), stop=stop,
                                              ready=ready.set_result))
        async with asyncio.timeout(10):
            (url,) = await ready
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
            assert response.status == 200
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert sink.flushes == 1


def test_serve_syslog__receives_until_stopped_then_flushes() -> None:
    sink = MemorySink()

    async def main() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        config = BridgeConfig(syslog_listen=["tcp://127.0.0.1:0"])
        task = asyncio.create_task(serve_syslog(sink, config, stop=stop, ready=ready.set_result))
        async with asyncio.timeout(10):
            (address,) = await ready
        _, writer = await asyncio.open_connection("127.0.0.1", int(address.rsplit(":", 1)[1]))
        writer.write(b"<13>Mar 19 10:00:00 h1 app: hello\n")
        await writer.drain()
        await wait_until(lambda: len(sink.events) == 1, sink=sink)
        writer.close()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert [e.text for e in sink.events] == ["hello"]
    assert sink.flushes == 1


def test_settings__come_from_the_main_cli_context_object() -> None:
    settings = Settings(kafka_bootstrap="kafka.example:9092")
    seen: list[Settings] = []

    def factory(given: Settings) -> MemorySink:
        seen.append(given)
        raise click.ClickException("stop here")  # the test only needs the settings it was built with

    class MainCliContext:  # shaped like app.cli.CliContext
        def __init__(self) -> None:
            self.settings = settings

    result = CliRunner().invoke(make_bridge_group(factory), ["syslog"], obj=MainCliContext())
    assert "stop here" in result.output
    assert seen == [settings]


def test_commands__take_a_log_level() -> None:
    for command in ("http", "syslog"):
        result = CliRunner().invoke(make_bridge_group(lambda settings: MemorySink()), [command, "--help"])
        assert "--log-level" in result.output


def test_kafka_sink_that_cannot_start__is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.bridges.kafka_sink as kafka_sink

    def refuse(settings: Settings) -> MemorySink:
        raise SinkUnavailable("topic events does not exist: run `vigil topics apply`")

    monkeypatch.setattr(kafka_sink, "make_sink", refuse)
    result = CliRunner().invoke(make_bridge_group(), ["http", "--listen", "127.0.0.1:0"], obj=Settings())
    assert result.exit_code == 1
    assert "cannot start the bridge: topic events does not exist: run `vigil topics apply`" in result.output


def test_address_in_use__is_a_one_line_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(make_bridge_group(lambda settings: MemorySink()),
                                    ["syslog", "--listen", f"tcp://127.0.0.1:{port}"], obj=Settings())
    assert result.exit_code == 1
    assert "cannot listen:" in result.output and "Traceback" not in result.output
