"""The `vigil` command. Subcommands live with their area and are imported only when used.

Global options (--config, --bootstrap, --registry) may appear anywhere on the command line.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from app.config import ConfigError, Settings, load_settings

__all__ = ["CliContext", "main", "pass_cli"]

# command name -> "module:attribute" (a click.Command); imported on first use.
LAZY_COMMANDS: dict[str, str] = {
    "dev": "app.devstack.cli:dev_group",
    "topics": "app.topics.cli:topics_group",
    "schemas": "app.registry.schemas_cli:schemas_group",
    "registry": "app.registry.cli:registry_group",
    "emit": "app.events_cli:emit_command",
    "events": "app.events_cli:events_group",
    "rules": "app.rules.cli:rules_group",
    "routes": "app.routing.cli:routes_group",
    "bridge": "app.bridges.cli:bridge_group",
    "worker": "app.runtime.cli:worker_command",
    "beacon": "app.beacons.cli:beacon_group",
    "actions": "app.actions.cli:actions_command",
    "trace": "app.actions.cli:trace_command",
    "silence": "app.actions.cli:silence_group",
    "executor": "app.executor.cli:executor_command",
    "status": "app.pipeline.cli:status_command",
    "metrics": "app.pipeline.cli:metrics_command",
    "members": "app.members.cli:members_command",
    "ui": "app.web.cli:ui_command",
    "backtest": "app.backtest.cli:backtest_command",
    "capture": "app.backtest.cli:capture_command",
    "replay": "app.backtest.cli:replay_command",
    "gate": "app.orchestration.cli:gate_group",
    "runs": "app.orchestration.cli:runs_group",
    "approve": "app.orchestration.cli:approve_command",
    "lookup": "app.lookups.cli:lookup_command",
}

# Hoisted from anywhere on the line. Not --config: subcommands have their own (beacon run --config).
_GLOBAL_OPTIONS = ("--bootstrap", "--registry")


@dataclass
class CliContext:
    """What every command gets: settings (loaded lazily, with flag overrides) and what was explicit."""

    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(**self.overrides)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings

    @property
    def explicit_kafka(self) -> bool:
        return "kafka_bootstrap" in self.overrides or "VIGIL_KAFKA_BOOTSTRAP" in os.environ

    @property
    def explicit_registry(self) -> bool:
        return "schema_registry_url" in self.overrides or "VIGIL_SCHEMA_REGISTRY_URL" in os.environ


pass_cli = click.make_pass_decorator(CliContext)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on demand (fast start, no import cycles)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as exc:
                if exc.name and module.startswith(exc.name):
                    return None  # area not built yet
                raise
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="settings file (default vigil.yaml)")
@click.option("--bootstrap", help="Kafka bootstrap HOST:PORT (env VIGIL_KAFKA_BOOTSTRAP)")
@click.option("--registry", help="schema registry URL (env VIGIL_SCHEMA_REGISTRY_URL)")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, bootstrap: str | None, registry: str | None) -> None:
    """Vigil: event-driven infrastructure on Kafka."""
    if config_file:
        if not Path(config_file).is_file():
            raise click.ClickException(f"config file {config_file} does not exist")
        os.environ["VIGIL_CONFIG"] = config_file
    overrides = {k: v for k, v in (("kafka_bootstrap", bootstrap), ("schema_registry_url", registry)) if v}
    ctx.obj = CliContext(overrides)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front, so `vigil emit ... --bootstrap X` works."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(argv[i:i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def parse_pairs(values: tuple[str, ...], *, option: str, numeric: bool = False) -> dict[str, Any]:
    """Parse repeated NAME=VALUE options; numeric values must be finite numbers."""
    out: dict[str, Any] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{raw!r}: expected NAME=VALUE", param_hint=option)
        if numeric:
            try:
                number = float(value)
            except ValueError:
                raise click.BadParameter(f"{raw!r}: {value!r} is not a number", param_hint=option) from None
            if not math.isfinite(number):
                raise click.BadParameter(f"{raw!r}: metrics must be finite numbers", param_hint=option)
            out[key] = number
        else:
            out[key] = value
    return out


def print_json(obj: Any) -> None:
    """One JSON document on one line (for --json output)."""
    click.echo(json.dumps(obj, default=str, separators=(",", ":")))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `vigil` console script."""
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    try:
        cli.main(args=args, prog_name="vigil", standalone_mode=False)
    except click.UsageError as exc:
        # One line that says what was wrong; `--help` has the rest.
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    # Importing through the package keeps one copy of this module (and of CliContext).
    from app.cli import main as _main

    _main()
