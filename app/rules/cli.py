"""`vigil rules check [DIR]` and `vigil rules test DIR --events F [--expect F] [--json]`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from app.rules.loader import RuleSetLoader
from app.rules.offline import InputError, compare_actions, read_jsonl, simulate

__all__ = ["rules_group"]


def _default_rules_dir(ctx: click.Context) -> Path:
    """The configured rules_dir when run under `vigil` (settings), else ./rules."""
    from app.cli import CliContext  # local: this module must import without the whole CLI

    cli_context = ctx.find_object(CliContext)
    return Path(cli_context.settings.rules_dir) if cli_context else Path("rules")


def _load_or_fail(directory: Path, *, errors_to_stderr: bool) -> RuleSetLoader:
    loader = RuleSetLoader(directory)
    result = loader.reload()
    for error in result.errors:
        click.echo(str(error), err=errors_to_stderr)
    if result.errors:
        raise click.ClickException(f"{len(result.errors)} error(s) in {directory}; fix them and run again")
    return loader


@click.group("rules")
def rules_group() -> None:
    """Check rule files and test them against recorded events."""


@rules_group.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def check_command(ctx: click.Context, directory: Path | None) -> None:
    """Validate every rule file in DIRECTORY (default: the configured rules_dir).

    Prints `file:line: message` for each problem and exits non-zero if there is any.
    """
    directory = directory or _default_rules_dir(ctx)
    loader = _load_or_fail(directory, errors_to_stderr=False)  # the errors are check's output
    files = len({rule.file for rule in loader.ruleset})
    click.echo(f"{directory}: {len(loader.ruleset)} rule(s) in {files} file(s), no errors")


@rules_group.command("test")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--events", "events_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="JSONL: events (vigil.Event or custom records with `type`) and status transitions")
@click.option("--expect", "expect_file", type=click.Path(dir_okay=False, exists=True),
              help="JSONL of expected actions (e.g. saved --json output); exit 1 on any difference")
@click.option("--until", "until_ms", type=int, default=None,
              help="let event time run to this ms after the last input (fires pending absence timers)")
@click.option("--json", "as_json", is_flag=True, help="one action per line as JSON (the --expect format)")
def test_command(directory: Path, events_file: str, expect_file: str | None, until_ms: int | None,
                 as_json: bool) -> None:
    """Run the rules in DIRECTORY over --events by event time and print the actions they produce."""
    loader = _load_or_fail(directory, errors_to_stderr=True)  # stdout is for actions (maybe --json)
    try:
        result = simulate(loader.ruleset, read_jsonl(events_file), until_ms=until_ms)
        expected = list(read_jsonl(expect_file)) if expect_file else None
    except InputError as exc:
        raise click.ClickException(f"{events_file}: {exc}" if str(exc).startswith("record") else str(exc)) \
            from None
    for action in result.actions:
        if as_json:
            click.echo(json.dumps(action.to_dict(), sort_keys=True, separators=(",", ":")))
        else:
            params = json.dumps(action.params, sort_keys=True)
            click.echo(f"{action.time_ms} {action.rule} {action.type} -> {action.target} {params}")
    for failure in result.failures:
        click.echo(f"warning: {failure}", err=True)
    if expected is not None:
        differences = compare_actions(result.actions, expected)
        for difference in differences:
            click.echo(difference, err=True)
        if differences:
            raise click.ClickException(f"{len(differences)} difference(s) from {expect_file}")
        click.echo(f"OK: {len(result.actions)} action(s) as expected", err=True)
