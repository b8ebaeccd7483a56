"""`vigil registry ...` commands (registered on the main CLI by app/cli.py)."""

from __future__ import annotations

import logging

import click

from app.config import ConfigError, Settings, load_settings
from app.registry.server import serve
from app.registry.store import SCHEMAS_TOPIC, StoreError

__all__ = ["parse_listen", "registry_group"]


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); raises click.BadParameter with what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")  # allow [::1]:8081
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT (e.g. 127.0.0.1:8081), got {value!r}")
    return host, int(port)


def _settings(ctx: click.Context) -> Settings:
    settings = getattr(ctx.obj, "settings", None)
    if settings is not None:
        return settings
    try:  # run standalone (not under the main CLI): read vigil.yaml / VIGIL_* ourselves
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("registry")
def registry_group() -> None:
    """Schema registry: the Confluent REST API, stored in a compacted Kafka topic."""


@registry_group.command("serve")
@click.option("--listen", default="127.0.0.1:8081", show_default=True, metavar="HOST:PORT",
              help="Address to serve the registry API on.")
@click.option("--startup-timeout", default=60.0, show_default=True, metavar="SECONDS", type=click.FloatRange(min=0.1),
              help="How long to wait for Kafka and to read the registry topic at startup.")
@click.pass_context
def serve_command(ctx: click.Context, listen: str, startup_timeout: float) -> None:
    """Serve the schema registry until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    host, port = parse_listen(listen)
    settings = _settings(ctx)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"schema registry: http://{host}:{port} (Kafka {settings.kafka_bootstrap}, "
               f"topic {settings.topic(SCHEMAS_TOPIC)})", err=True)
    try:
        serve(settings, host=host, port=port, startup_timeout_s=startup_timeout)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
