"""`vigil dev up|down|status|run`."""

from __future__ import annotations

import sys

import click

from app.cli import CliContext, pass_cli
from app.devstack.kafka import DevStackError
from app.devstack.stack import DevStack, StackStatus
from app.devstack.supervisor import Component, Console, run_foreground

__all__ = ["dev_group"]


def _stack(cli: CliContext) -> DevStack:
    return DevStack(cli.settings, external_kafka=cli.explicit_kafka, external_registry=cli.explicit_registry)


def _endpoint_lines(status: StackStatus) -> list[str]:
    return [f"kafka     {status.bootstrap}  {'up' if status.kafka_ok else 'NOT ANSWERING'}",
            f"registry  {status.registry_url}  {'up' if status.registry_ok else 'NOT ANSWERING'}"]


def _print_endpoints(status: StackStatus) -> None:
    for line in _endpoint_lines(status):
        click.echo(line)


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
@click.option("--component", "only", multiple=True, metavar="NAME",
              help="run only this component (repeatable; default: every one)")
@pass_cli
def dev_run(cli: CliContext, rules_dir: str, only: tuple[str, ...]) -> None:
    """`dev up`, then every component in the foreground until Ctrl-C, which stops everything.

    A component that dies is reported (exit code or signal, its last output) and restarted with
    backoff. Ctrl-C or SIGTERM stops every component, the registry and Kafka, even when stdout is a
    pipe whose reader is gone (`make run | tee run.log`)."""
    from app.devstack.components import local_components

    stack = _stack(cli)
    console = Console()

    def start() -> list[Component]:
        components = local_components(stack.settings, rules_dir=rules_dir)
        unknown = sorted(set(only) - {c.name for c in components})
        if unknown:
            raise click.BadParameter(f"no component {', '.join(unknown)}; the components are "
                                     f"{', '.join(c.name for c in components)}", param_hint="--component")
        try:
            status = stack.up(log=console.line)
        except DevStackError as exc:
            raise click.ClickException(str(exc)) from exc
        for line in _endpoint_lines(status):
            console.line(line)
        # the components point at what `up` settled on (a local broker's address, say)
        return [c for c in local_components(stack.settings, rules_dir=rules_dir) if not only or c.name in only]

    run_foreground(start, lambda: stack.down(log=console.line), console=console)
