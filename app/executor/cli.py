"""`vigil executor`: consume `actions`, run plugins, publish `action-results`, until SIGTERM/SIGINT.

    vigil executor -c executor.yaml --plugins mycompany.actions

`-c/--config` after `executor` is the executor's file (env VIGIL_EXECUTOR_CONFIG); the settings
file (Kafka, registry) is the global `vigil --config vigil.yaml executor ...`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

from app.cli import CliContext, pass_cli
from app.config import ConfigError
from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig, load_executor_config
from app.executor.plugin import PluginRegistry, default_plugins
from app.executor.plugins import load_builtin_plugins
from app.executor.runner import CheckpointFailed
from app.logs import configure_logging
from app.rules.signing_key import SigningKeyError, load_signing_key
from app.runtime.agent import load_plugins
from app.runtime.cli import http_auth, parse_listen, session_timeout_option
from app.runtime.worker import COMMIT_INTERVAL_HELP, Guarantee, Worker, WorkerOptions

__all__ = ["DEFAULT_CONFIG", "executor_command"]

DEFAULT_CONFIG = Path("executor.yaml")


def _load(config_path: Path | None, plugins: tuple[str, ...]) -> tuple[ExecutorConfig, PluginRegistry]:
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    try:
        config = load_executor_config(config_path)
        load_builtin_plugins()
        load_plugins([*config.plugins, *plugins])
    except (ConfigError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc
    return config, default_plugins


def _summary(config: ExecutorConfig, plugins: PluginRegistry, key: bytes | None) -> str:
    names = ", ".join(f"{n}{' (idempotent)' if (s := plugins.get(n)) and s.idempotent else ''}"
                      for n in plugins.names())
    smtp = f"{config.smtp.host}:{config.smtp.port}" if config.smtp else "none"
    outbound = "; ".join(rule.describe() for rule in config.outbound.allow) or "nothing"
    return (f"plugins: {names}\ncommands: {', '.join(sorted(config.commands)) or 'none'}\nsmtp: {smtp}\n"
            f"outbound: {outbound}\n"
            f"signatures: {'required (key loaded)' if key else 'not checked (no key)'}\n"
            f"concurrency {config.concurrency}, per target {config.per_target_concurrency}, "
            f"splay {config.splay_ms} ms, batch {config.batch_size}, attempts {config.retries.max_attempts}")


@click.command("executor")
@click.option("-c", "--config", "--executor-config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="VIGIL_EXECUTOR_CONFIG", help="executor.yaml (default: ./executor.yaml if present, else defaults)")
@click.option("--plugins", multiple=True, metavar="MODULE", help="module with @action plugins (repeatable)")
@click.option("--guarantee", type=click.Choice([g.value for g in Guarantee]), default=Guarantee.EXACTLY_ONCE.value,
              show_default=True, help="exactly_once: exactly one result per action id, even across crashes")
@click.option("--app-id", default="vigil-executor", show_default=True, help="consumer group and changelog prefix")
@click.option("--instance-id", help="stable id of this executor (transactional id, state dir); default: host name")
@click.option("--http", "http_listen", default="127.0.0.1:8089", show_default=True,
              help="HOST:PORT for /healthz and /metrics ('' disables; VIGIL_API_TOKEN guards /metrics)")
@click.option("--commit-interval-ms", type=int, help=COMMIT_INTERVAL_HELP)
@click.option("--check", is_flag=True, help="validate the config and plugins, print a summary and exit")
@session_timeout_option
@click.option("--log-level", default="INFO", show_default=True)
@pass_cli
def executor_command(cli: CliContext, config_path: Path | None, plugins: tuple[str, ...], guarantee: str,
                     app_id: str, instance_id: str | None, http_listen: str, commit_interval_ms: int | None,
                     check: bool, session_timeout_ms: int, log_level: str) -> None:
    """Run actions from `actions` once each; publish one ActionResult per action."""
    configure_logging(log_level)
    config, registry = _load(config_path, plugins)
    try:
        key = load_signing_key()
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    if key is None and config.require_signature:
        raise click.ClickException("require_signature is set but no signing key is configured: set "
                                   "VIGIL_ACTION_SIGNING_KEY or VIGIL_ACTION_SIGNING_KEY_FILE")
    if check:
        click.echo(_summary(config, registry, key))
        return
    host, port = parse_listen(http_listen, "--http")
    token, open_metrics = http_auth()
    from app.orchestration.service import build_orchestration  # runbooks, rolls (executor.yaml orchestration:)

    orchestration = build_orchestration(cli.settings, config, registry, signing_key=key)
    agent = build_executor_agent(config, plugins=registry, signing_key=key)
    options = WorkerOptions(app_id=app_id, guarantee=Guarantee(guarantee), instance_id=instance_id,
                            commit_interval_ms=commit_interval_ms, max_batch=config.batch_size,
                            http_host=host or "127.0.0.1", http_port=port, topics_wait_s=300,
                            session_timeout_ms=session_timeout_ms, api_token=token, metrics_open=open_metrics)
    worker = Worker(cli.settings, [agent, *orchestration.agents], options)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    click.echo(f"executor {worker.instance_id}: {guarantee}; http {http_listen or 'off'}\n"
               f"{_summary(config, registry, key)}", err=True)
    try:
        worker.run()
    except CheckpointFailed as exc:
        raise click.ClickException(f"stopped: {exc}") from exc
    finally:
        orchestration.close()
