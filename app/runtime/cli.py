"""`vigil worker`: run every agent (built-in stages + plugins) until SIGTERM/SIGINT."""

from __future__ import annotations

import importlib
import logging
import signal

import click

from app.cli import CliContext, pass_cli
from app.native import describe_native
from app.runtime.agent import default_registry, load_plugins
from app.runtime.worker import COMMIT_INTERVAL_HELP, Guarantee, Worker, WorkerOptions

__all__ = ["BUILTIN_AGENT_MODULES", "worker_command"]

#: Built-in stages, written on the same public agent API as plugins.
BUILTIN_AGENT_MODULES = ("app.pipeline.agents", "app.rules.agent", "app.members.agent")


def load_builtin_agents() -> list[str]:
    """Import the built-in stage modules that exist; returns their names."""
    loaded = []
    for module in BUILTIN_AGENT_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        loaded.append(module)
    return loaded


@click.command("worker")
@click.option("--plugins", multiple=True, metavar="MODULE", help="plugin module with @agent functions (repeatable)")
@click.option("--no-builtins", is_flag=True, help="run only plugin agents")
@click.option("--guarantee", type=click.Choice([g.value for g in Guarantee]), default=Guarantee.AT_LEAST_ONCE.value,
              show_default=True)
@click.option("--app-id", default="vigil-worker", show_default=True, help="consumer group and changelog prefix")
@click.option("--instance-id", help="stable id of this worker (transactional id, state dir); default: host name")
@click.option("--http", "http_listen", default="127.0.0.1:8088", show_default=True,
              help="HOST:PORT for /healthz, /metrics and the query API ('' disables)")
@click.option("--commit-interval-ms", type=int, help=COMMIT_INTERVAL_HELP)
@click.option("--wait-for-topics", "topics_wait_s", type=float, default=300, show_default=True,
              help="seconds to wait for source topics to exist (e.g. while a deployment's topics job runs)")
@click.option("--log-level", default="INFO", show_default=True)
@pass_cli
def worker_command(cli: CliContext, plugins: tuple[str, ...], no_builtins: bool, guarantee: str, app_id: str,
                   instance_id: str | None, http_listen: str, commit_interval_ms: int | None, topics_wait_s: float,
                   log_level: str) -> None:
    """Run all agents with graceful shutdown on SIGTERM (finish the batch, flush, commit)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    builtins = [] if no_builtins else load_builtin_agents()
    try:
        load_plugins(plugins)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    agents = default_registry.agents()
    if not agents:
        raise click.ClickException("no agents to run: pass --plugins MODULE (modules with @agent functions)")
    host, port = None, None
    if http_listen:
        host, _, port_text = http_listen.rpartition(":")
        if not port_text.isdigit():
            raise click.BadParameter(f"{http_listen!r}: expected HOST:PORT", param_hint="--http")
        port = int(port_text)
    options = WorkerOptions(app_id=app_id, guarantee=Guarantee(guarantee), instance_id=instance_id,
                            commit_interval_ms=commit_interval_ms, http_host=host or "127.0.0.1", http_port=port,
                            topics_wait_s=topics_wait_s)
    worker = Worker(cli.settings, agents, options)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    click.echo(f"worker {worker.instance_id}: {len(agents)} agent(s) "
               f"[{', '.join(a.name for a in agents)}] from {', '.join([*builtins, *plugins]) or '-'}; "
               f"{guarantee}; http {http_listen or 'off'}; {describe_native()}", err=True)
    worker.run()
