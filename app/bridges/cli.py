"""`vigil bridge http` and `vigil bridge syslog`: run a bridge until SIGINT/SIGTERM.

Both use the same Kafka/registry settings as every command (`app.config.Settings`: the main CLI's
context object carries them, global flags applied; loaded from file/env when run standalone). The sink is built by
`app.bridges.kafka_sink.make_sink(settings) -> EventSink`, imported only when a command runs, so
this module works (and is testable) without a Kafka client; tests pass their own `sink_factory`.

`vigil bridge http` records accepted deliveries in the `deliveries` topic
(`app.bridges.kafka_ledger`, built by `ledger_factory`), so redeliveries are recognised across
restarts and replicas; it reads the topic's last window before it serves. Tests pass their own
`sink_factory` and get a ledger in memory unless they pass a `ledger_factory` too.

Logs go to stderr (`--log-level`, default INFO): readiness ("... listening on ..."), rejections
(rate-limited) and delivery problems. A bridge whose events could not all be delivered by the
time it stops exits with status 1 and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from app.bridges.config import BridgeConfig, load_bridge_config
from app.bridges.http import make_http_app
from app.bridges.ledger import DeliveryLedger, LedgerUnavailable
from app.bridges.sink import EventSink, SinkUnavailable
from app.bridges.syslog import SyslogServer
from app.config import ConfigError, Settings, load_settings
from app.dead_letter_limit import dead_letter_limits
from app.logs import configure_logging

__all__ = ["LedgerFactory", "SinkFactory", "bridge_group", "make_bridge_group", "serve_http", "serve_syslog"]

log = logging.getLogger(__name__)

SinkFactory = Callable[[Settings], EventSink]
#: A started delivery ledger for the HTTP bridge (None: dedup in memory only, or off).
LedgerFactory = Callable[[Settings, BridgeConfig], DeliveryLedger | None]


_LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def _kafka_sink_factory(settings: Settings) -> EventSink:
    try:
        from app.bridges.kafka_sink import make_sink
    except ImportError as exc:
        raise click.ClickException(f"the Kafka sink is not available (app.bridges.kafka_sink): {exc}") from exc
    try:
        return make_sink(settings)
    except SinkUnavailable as exc:
        raise click.ClickException(f"cannot start the bridge: {exc}") from exc


def _kafka_ledger_factory(settings: Settings, config: BridgeConfig) -> DeliveryLedger | None:
    """The delivery ledger on the `deliveries` topic, started (None when dedup is off)."""
    if config.dedup_window_s <= 0:
        log.warning("VIGIL_BRIDGE_DEDUP_WINDOW_S=0: redelivered webhooks and retried requests produce again")
        return None
    from app.bridges.kafka_ledger import KafkaDeliveryLedger

    ledger = KafkaDeliveryLedger(settings, window_s=config.dedup_window_s, lease_s=config.dedup_lease,
                                 wait_s=config.delivery_timeout_s)
    try:
        ledger.start()
    except LedgerUnavailable as exc:
        ledger.close()
        raise click.ClickException(f"cannot start the bridge: the delivery ledger: {exc}") from exc
    return ledger


def _run_bridge(sink: EventSink, main: Coroutine[Any, Any, None], ledger: DeliveryLedger | None = None) -> None:
    """Run a serve loop to the end; undelivered events at shutdown become a clear non-zero exit."""
    try:
        asyncio.run(main)
    except SinkUnavailable as exc:
        raise click.ClickException(f"stopped with events not delivered: {exc}") from exc
    except ConfigError as exc:  # e.g. a TLS certificate that does not load
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # binding the listen address failed
        raise click.ClickException(f"cannot listen: {exc}") from exc
    finally:
        if ledger is not None:
            ledger.close()
        close = getattr(sink, "close", None)
        if callable(close):  # the serve loop flushed already; this stops the sink's own thread
            close()


def _settings_of(ctx: click.Context) -> Settings:
    """The main CLI's settings (its context object carries them, with --bootstrap etc. applied)."""
    if isinstance(ctx.obj, Settings):
        return ctx.obj
    settings = getattr(ctx.obj, "settings", None)
    return settings if isinstance(settings, Settings) else load_settings()


async def _until_signalled(stop: asyncio.Event | None = None) -> None:
    """Wait for SIGINT/SIGTERM (or `stop`, for embedding and tests)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def serve_http(sink: EventSink, config: BridgeConfig, *, stop: asyncio.Event | None = None,
                     ready: Callable[[list[str]], None] | None = None, ledger: DeliveryLedger | None = None) -> None:
    """Serve the HTTP bridge until signalled (or `stop` is set); the app's cleanup flushes the sink.

    `ready` is called with the bound URLs once serving (port 0 in the config picks a free port);
    `ledger` records accepted deliveries (default: in this process only).
    """
    address = config.http_address
    runner = web.AppRunner(make_http_app(sink, config, ledger=ledger), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address.host, address.port)
        await site.start()
        urls = [f"http://{sockname[0]}:{sockname[1]}" for sockname in runner.addresses]
        log.info("http bridge listening on %s", ", ".join(urls) or str(address))
        if ready is not None:
            ready(urls)
        await _until_signalled(stop)
    finally:
        await runner.cleanup()


async def serve_syslog(sink: EventSink, config: BridgeConfig, *, stop: asyncio.Event | None = None,
                       ready: Callable[[list[str]], None] | None = None) -> None:
    """Serve the syslog bridge until signalled (or `stop` is set); stopping flushes the sink.

    `ready` is called with the bound addresses (`udp://...`, `tcp://...`) once listening.
    """
    server = SyslogServer(sink, config.syslog_listen, config)
    await server.start()
    try:
        if ready is not None:
            ready([str(address) for address in server.bound])
        await _until_signalled(stop)
    finally:
        await server.stop()


def make_bridge_group(sink_factory: SinkFactory | None = None, ledger_factory: LedgerFactory | None = None,
                      ) -> click.Group:
    """The `bridge` command group; `sink_factory` defaults to the Kafka sink, `ledger_factory` to the
    Kafka delivery ledger (with a `sink_factory` given: a ledger in memory)."""
    factory = sink_factory or _kafka_sink_factory
    make_ledger: LedgerFactory = ledger_factory or (
        _kafka_ledger_factory if sink_factory is None else (lambda settings, config: None))

    def prepare(ctx: click.Context, log_level: str, **overrides: Any) -> tuple[EventSink, BridgeConfig, Settings]:
        configure_logging(log_level)
        try:
            settings = _settings_of(ctx)
            config = load_bridge_config(dead_letters=dead_letter_limits(settings), **overrides)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        return factory(settings), config, settings

    @click.group("bridge")
    def group() -> None:
        """Translate other tools' events (webhooks, syslog) into Vigil events."""

    @group.command("http")
    @click.option("--listen", metavar="HOST:PORT", help="address to serve on (default 0.0.0.0:8080)")
    @click.option("--log-level", default="INFO", show_default=True, type=_LOG_LEVELS)
    @click.pass_context
    def http_command(ctx: click.Context, listen: str | None, log_level: str) -> None:
        """Serve /v1/events, /v1/alertmanager, /v1/github, /v1/nagios, /v1/puppet (+ /healthz, /metrics)."""
        sink, config, settings = prepare(ctx, log_level, http_listen=listen)
        try:
            ledger = make_ledger(settings, config)
        except BaseException:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
            raise
        _run_bridge(sink, serve_http(sink, config, ledger=ledger), ledger)

    @group.command("syslog")
    @click.option("--listen", "listens", multiple=True, metavar="udp://HOST:PORT|tcp://HOST:PORT|tls://HOST:PORT",
                  help="repeatable (default udp://0.0.0.0:5514 and tcp://0.0.0.0:5514)")
    @click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path),
                  help="tls://: certificate (chain) PEM file (env VIGIL_BRIDGE_SYSLOG_TLS_CERT)")
    @click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path),
                  help="tls://: private key PEM file (env VIGIL_BRIDGE_SYSLOG_TLS_KEY)")
    @click.option("--tls-client-ca", type=click.Path(dir_okay=False, path_type=Path),
                  help="tls://: require client certificates signed by this CA bundle "
                       "(env VIGIL_BRIDGE_SYSLOG_TLS_CLIENT_CA)")
    @click.option("--log-level", default="INFO", show_default=True, type=_LOG_LEVELS)
    @click.pass_context
    def syslog_command(ctx: click.Context, listens: tuple[str, ...], tls_cert: Path | None, tls_key: Path | None,
                       tls_client_ca: Path | None, log_level: str) -> None:
        """Receive RFC 5424 / RFC 3164 syslog over UDP, TCP and TLS (RFC 5425)."""
        sink, config, _ = prepare(ctx, log_level, syslog_listen=list(listens) or None, syslog_tls_cert=tls_cert,
                               syslog_tls_key=tls_key, syslog_tls_client_ca=tls_client_ca)
        _run_bridge(sink, serve_syslog(sink, config))

    return group


#: The group registered by the main CLI (`vigil bridge ...`).
bridge_group = make_bridge_group()
