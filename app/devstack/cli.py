"""`vigil dev up|down|status|run`."""

from __future__ import annotations

import sys

import click

from app.cli import CliContext, pass_cli
from app.devstack.kafka import DevStackError
from app.devstack.stack import DevStack

__all__ = ["dev_group"]


def _stack(cli: CliContext) -> DevStack:
    return DevStack(cli.settings, external_kafka=cli.explicit_kafka, external_registry=cli.explicit_registry)


def _print_endpoints(status) -> None:
    click.echo(f"kafka     {status.bootstrap}  {'up' if status.kafka_ok else 'NOT ANSWERING'}")
    click.echo(f"registry  {status.registry_url}  {'up' if status.registry_ok else 'NOT ANSWERING'}")


@click.group("dev")
def dev_group() -> None:
    """Local stack: a real single-node Apache Kafka (KRaft) and the schema registry, data under .vigil/."""


@dev_group.command("up")
@pass_cli
def dev_up(cli: CliContext) -> None:
    """Start Kafka and the registry, create topics, register schemas, wait until all answer."""
    try:
        status = _stack(cli).up(log=lambda line: click.echo(line, err=True))
    except DevStackError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_endpoints(status)
    click.echo(f"export VIGIL_KAFKA_BOOTSTRAP={status.bootstrap} VIGIL_SCHEMA_REGISTRY_URL={status.registry_url}")
    if not status.ok:
        sys.exit(1)


@dev_group.command("down")
@pass_cli
def dev_down(cli: CliContext) -> None:
    """Stop what `dev up` started (data is kept; `up` brings it back)."""
    _stack(cli).down(log=click.echo)


@dev_group.command("status")
@pass_cli
def dev_status(cli: CliContext) -> None:
    """Print the bootstrap address and registry URL; exit 0 only when both answer."""
    status = _stack(cli).status()
    _print_endpoints(status)
    sys.exit(0 if status.ok else 1)


@dev_group.command("run")
@click.option("--rules", "rules_dir", default="rules", show_default=True, help="rules directory for the worker")
@pass_cli
def dev_run(cli: CliContext, rules_dir: str) -> None:
    """`dev up`, then every component in the foreground until Ctrl-C, which stops everything."""
    from app.devstack.components import local_components
    from app.devstack.supervisor import Supervisor

    stack = _stack(cli)
    try:
        status = stack.up(log=lambda line: click.echo(line, err=True))
    except DevStackError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_endpoints(status)
    components = local_components(stack.settings, rules_dir=rules_dir)
    click.echo(f"running: {', '.join(c.name for c in components)} (Ctrl-C stops everything)")
    try:
        Supervisor(components).run()
    finally:
        stack.down(log=click.echo)
