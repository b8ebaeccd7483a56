"""`vigil ui`: the HTTP API (/api/v1), its live stream and the web UI, on 127.0.0.1:8090 by default."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from app.cli import CliContext, pass_cli
from app.config import ConfigError
from app.logs import configure_logging
from app.web.config import DEFAULT_LISTEN, load_ui_config

__all__ = ["ui_command"]


@click.command("ui")
@click.option("--listen", metavar="HOST:PORT", help=f"where to serve (env VIGIL_UI_LISTEN; default {DEFAULT_LISTEN})")
@click.option("--worker", "workers", multiple=True, metavar="URL",
              help="worker HTTP API to ask for windows, the archive index and rules (repeatable; env "
                   "VIGIL_WORKER_URL; default http://127.0.0.1:8088)")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="the deployed rules, for backtests to compare with (default: VIGIL_RULES_DIR or ./rules)")
@click.option("--log-level", default="INFO", show_default=True)
@pass_cli
def ui_command(cli: CliContext, listen: str | None, workers: tuple[str, ...], rules_dir: str | None,
               log_level: str) -> None:
    """Serve the API, the live stream and the web UI until SIGTERM/SIGINT.

    With Vigil's API token set (VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE) it is required for every
    change, and for reads too with VIGIL_UI_AUTH_READS=true; the same token is sent to the workers.
    See app/web/config.py for the `ui:` settings."""
    from app.web.server import UiServer

    configure_logging(log_level)
    try:
        config = load_ui_config(cli.settings, listen=listen, workers=workers or None)
        server = UiServer(cli.settings, config, rules_dir=Path(rules_dir) if rules_dir else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(_serve(server))


async def _serve(server: object) -> None:
    from app.web.server import UiServer

    assert isinstance(server, UiServer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start()
    token = "a token is required for changes" + (" and reads" if server.config.auth_reads else "") \
        if server.config.token_text() else "no token (set VIGIL_API_TOKEN to require one)"
    click.echo(f"vigil ui: http://{server.config.host}:{port}/  (API {server.config.host}:{port}/api/v1; "
               f"workers {', '.join(server.config.workers)}; {token})", err=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
