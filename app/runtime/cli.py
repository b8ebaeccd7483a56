"""`vigil worker`: build the built-in stages from the settings, add plugin agents, and run them all
until SIGTERM/SIGINT."""

from __future__ import annotations

import signal

import click

from app.api_token import ApiTokenError, load_api_token, metrics_open
from app.cli import CliContext, pass_cli
from app.config import ConfigError
from app.logs import configure_logging
from app.native import describe_native
from app.runtime.agent import default_registry, load_plugins
from app.runtime.scheduling import BACKGROUND_NICENESS, run_as_batch_task
from app.runtime.stage import combine, plugin_stage
from app.runtime.worker import COMMIT_INTERVAL_HELP, Guarantee, Worker, WorkerOptions

__all__ = ["http_auth", "parse_listen", "session_timeout_option", "worker_command"]

#: --session-timeout-ms of the commands that run a Worker (a static group member).
session_timeout_option = click.option(
    "--session-timeout-ms", type=int, default=WorkerOptions.session_timeout_ms, show_default=True,
    help="how long the group waits for a silent worker before giving its partitions to others; a restart "
         "within it moves nothing, and a broker outage shorter than it keeps the membership")


def parse_listen(value: str, param_hint: str) -> tuple[str | None, int | None]:
    """HOST:PORT of an --http option ('' disables: (None, None))."""
    if not value:
        return None, None
    host, _, port_text = value.rpartition(":")
    if not port_text.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT", param_hint=param_hint)
    return host or "127.0.0.1", int(port_text)


def http_auth() -> tuple[bytes | None, bool]:
    """WorkerOptions' api_token and metrics_open from the environment (app.api_token)."""
    try:
        return load_api_token(), metrics_open()
    except ApiTokenError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("worker")
@click.option("--stage", "stage_names", multiple=True, metavar="NAME",
              help="built-in stage to run: pipeline, rules, members, routes, sinks (repeatable; default: all)")
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
@session_timeout_option
@click.option("--standby-replicas", type=click.IntRange(0, 16), default=None,
              help="keep warm copies of each partition's state on this many other workers (fast failover; "
                   "default: standby_replicas from the settings, VIGIL_STANDBY_REPLICAS, else 0)")
@click.option("--batch-scheduling", is_flag=True,
              help="run as a Linux batch task (SCHED_BATCH, niceness +10): its wake-ups never preempt other work "
                   "on the CPU; for workers beside the pipeline's on a machine, e.g. forwarders (--stage routes "
                   "--stage sinks)")
@click.option("--log-level", default="INFO", show_default=True)
@pass_cli
def worker_command(cli: CliContext, stage_names: tuple[str, ...], plugins: tuple[str, ...], no_builtins: bool,
                   guarantee: str, app_id: str, instance_id: str | None, http_listen: str,
                   commit_interval_ms: int | None, topics_wait_s: float, session_timeout_ms: int,
                   standby_replicas: int | None, batch_scheduling: bool, log_level: str) -> None:
    """Run the built-in stages and plugin agents with graceful shutdown on SIGTERM (finish the batch,
    flush, commit)."""
    from app.stages import build_stages

    configure_logging(log_level)
    # before any stage or client starts a thread: they inherit the policy
    if batch_scheduling and not run_as_batch_task(BACKGROUND_NICENESS):
        click.echo("--batch-scheduling: this OS has no batch scheduling or refused it; running as usual", err=True)
    try:
        load_plugins(plugins)
        stages = [] if no_builtins else build_stages(cli.settings, stage_names or None)
    except (ImportError, ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    parts = combine([*stages, plugin_stage(default_registry)])
    if not parts.agents:
        raise click.ClickException("no agents to run: pass --plugins MODULE (modules with @agent functions)")
    host, port = parse_listen(http_listen, "--http")
    token, open_metrics = http_auth()
    options = WorkerOptions(app_id=app_id, guarantee=Guarantee(guarantee), instance_id=instance_id,
                            commit_interval_ms=commit_interval_ms, http_host=host or "127.0.0.1", http_port=port,
                            topics_wait_s=topics_wait_s, session_timeout_ms=session_timeout_ms,
                            standby_replicas=cli.settings.standby_replicas if standby_replicas is None
                            else standby_replicas,
                            api_token=token, metrics_open=open_metrics)
    worker = Worker(cli.settings, parts.agents, options, routes=parts.routes, collectors=parts.collectors)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    click.echo(f"worker {worker.instance_id}: {len(parts.agents)} agent(s) "
               f"[{', '.join(a.name for a in parts.agents)}] from stages "
               f"{', '.join(s.name for s in parts.stages if s.agents) or '-'}; "
               f"{guarantee}; http {http_listen or 'off'}; {describe_native()}", err=True)
    try:
        worker.run()
    finally:
        parts.close()
