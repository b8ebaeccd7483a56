"""`vigil beacon run` (watch this host, emit events for what changes) and `vigil beacon list`."""

from __future__ import annotations

import signal
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from app.beacons.assembly import build_beacons, open_publisher, spool_dir
from app.beacons.config import BeaconsConfig, load_beacons_config
from app.beacons.registry import BeaconDefinitionError
from app.beacons.runner import Runner, StopSignal
from app.beacons.spool import SpoolError
from app.cli import CliContext, pass_cli
from app.config import ConfigError
from app.durations import format_duration_ms
from app.logs import configure_logging

__all__ = ["beacon_group"]

DEFAULT_CONFIG = Path("beacons.yaml")
_CONFIG_HELP = "beacons file (default: ./beacons.yaml if present, else built-in defaults)"
_PLUGINS_HELP = "module name or .py file with @beacon functions (repeatable, or comma-separated)"


@click.group("beacon")
def beacon_group() -> None:
    """Beacons: watch this host and emit events for what changes."""


def _config(path: Path | None) -> BeaconsConfig:
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    try:
        return load_beacons_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _skip_httpx_cli() -> None:
    """Keep httpx from importing its command-line client (rich, pygments) when those happen to be
    installed: ~4 MB of RSS the beacon runner never uses, against a 60 MB budget. Only the
    `httpx` console script needs the real module, and it is not run in this process."""
    if "httpx" not in sys.modules:
        stub = types.ModuleType("httpx._main")
        stub.main = lambda: None  # type: ignore[attr-defined]
        sys.modules.setdefault("httpx._main", stub)


def _plugins(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


@contextmanager
def _stop_on_signals(stop: StopSignal) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@beacon_group.command("run")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=_CONFIG_HELP)
@click.option("--plugins", multiple=True, metavar="MODULE", help=_PLUGINS_HELP)
@click.option("--once", is_flag=True, help="run every beacon one time, deliver the events, and exit")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True)
@pass_cli
def run_command(cli: CliContext, config_path: Path | None, plugins: tuple[str, ...], once: bool,
                log_level: str) -> None:
    """Run the beacons until SIGTERM/SIGINT (or once), publishing to Kafka; while Kafka is
    unreachable events wait in a bounded on-disk spool and are delivered oldest first."""
    configure_logging(log_level)
    _skip_httpx_cli()
    config = _config(config_path)
    try:
        beacons = build_beacons(config, plugins=_plugins(plugins))
    except (BeaconDefinitionError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    settings = cli.settings
    try:
        publisher = open_publisher(config, settings)
    except (SpoolError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    runner = Runner(beacons, publisher, subject=config.subject, tags=config.tags)
    stop = StopSignal()
    try:
        runner.announce()
        if once:
            runner.run_once()
        else:
            with _stop_on_signals(stop):
                runner.run(stop)
    finally:
        runner.close()
        publisher.close(timeout_s=config.spool.delivery_timeout_ms / 1000)
        stop.close()
    failing, waiting = runner.failing(), publisher.left_in_spool
    summary = (f"{'ran' if once else 'stopped'} {len(beacons)} beacon(s) as {config.subject}: "
               f"{runner.events_published} event(s) published")
    if failing:
        summary += f"; failing: {', '.join(failing)}"
    if waiting:
        summary += f"; {waiting} event(s) wait in the spool at {spool_dir(config, settings)}"
    click.echo(summary, err=True)


@beacon_group.command("list")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=_CONFIG_HELP)
@click.option("--plugins", multiple=True, metavar="MODULE", help=_PLUGINS_HELP)
def list_command(config_path: Path | None, plugins: tuple[str, ...]) -> None:
    """Show the beacons a config runs (validates it and the plugins)."""
    config = _config(config_path)
    try:
        beacons = build_beacons(config, plugins=_plugins(plugins))
    except (BeaconDefinitionError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"subject {config.subject}" + (f"  tags {config.tags}" if config.tags else ""))
    for beacon in beacons:
        first_line = (beacon.description.strip().splitlines() or [""])[0]
        click.echo(f"  {beacon.name:<12} every {format_duration_ms(beacon.interval_ms):<6} {first_line}")
