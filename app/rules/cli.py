"""`vigil rules check [DIR]` and `vigil rules test DIR --events F [--expect F] [--json] [--junit F]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.backtest.capture import CaptureError, is_capture_line, read_capture, replay_capture
from app.backtest.replayer import FiredAction
from app.config import ConfigError
from app.lookups.operands import keys_without_data
from app.pipeline.config import PipelineConfig
from app.pipeline.validate import format_time_ms
from app.rules.dependencies import check_dependencies
from app.rules.junit import JUnitCase, JUnitSuite, junit_xml
from app.rules.loader import RuleSetLoader
from app.rules.offline import InputError, action_differences, read_jsonl, simulate

__all__ = ["default_rules_dir", "rules_group"]


def default_rules_dir(ctx: click.Context, given: Path | None = None) -> Path:
    """`given` if any, else the configured rules_dir when run under `vigil` (settings), else ./rules
    (what every command that reads a rules directory defaults to)."""
    if given is not None:
        return given
    from app.cli import CliContext  # local: this module must import without the whole CLI

    cli_context = ctx.find_object(CliContext)
    return Path(cli_context.settings.rules_dir) if cli_context else Path("rules")


def _load_or_fail(directory: Path, *, errors_to_stderr: bool) -> RuleSetLoader:
    from app.orchestration.definitions import check_definitions  # gates, runbooks, runbook/roll actions

    loader = RuleSetLoader(directory)
    result = loader.reload()
    from app.routing.loader import check_routes  # <rules_dir>/routes/*.yaml

    errors = sorted({*result.errors, *check_definitions(directory, loader.ruleset), *check_dependencies(directory),
                     *check_routes(directory)})
    for error in errors:
        click.echo(str(error), err=errors_to_stderr)
    if errors:
        raise click.ClickException(f"{len(errors)} error(s) in {directory}; fix them and run again")
    for warning in keys_without_data(((r.file, use) for r in loader.ruleset for use in r.lookup_uses),
                                     loader.lookups.data):
        click.echo(warning, err=errors_to_stderr)
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
    directory = default_rules_dir(ctx, directory)
    loader = _load_or_fail(directory, errors_to_stderr=False)  # the errors are check's output
    files = len({rule.file for rule in loader.ruleset})
    click.echo(f"{directory}: {len(loader.ruleset)} rule(s) in {files} file(s), no errors")


@rules_group.command("test")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--events", "events_files", required=True, multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="JSONL: events (vigil.Event or custom records with `type`) and status transitions, or a "
                   "capture file (`vigil capture`: replayed through the pipeline too); repeatable")
@click.option("--expect", "expect_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="JSONL of expected actions for the --events file in the same position (e.g. saved --json "
                   "output; `at` states a firing time); exit 1 on any difference")
@click.option("--until", "until", default=None, metavar="TIME",
              help="let event time run to TIME (ms since the epoch, ISO-8601, or +DURATION after the first input) "
                   "so pending absence timers fire; a capture runs to the end of its range by default")
@click.option("--json", "as_json", is_flag=True, help="one action per line as JSON (the --expect format)")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              help="write a JUnit XML report: a suite per --events file, a case per expected action")
@click.pass_context
def test_command(ctx: click.Context, directory: Path, events_files: tuple[str, ...], expect_files: tuple[str, ...],
                 until: str | None, as_json: bool, junit_file: Path | None) -> None:
    """Run the rules in DIRECTORY over --events by event time and print the actions they produce.

    A capture file (`vigil capture`) runs through the worker's pipeline as well (status
    transitions, ttl expiry), exactly as `vigil backtest` would; other files feed the rules
    directly. With --expect, the actions must be the expected ones (in the spirit of promtool's
    exp_alerts: rule, type, target, and any of params, id, `at`/time the expectation states)."""
    if expect_files and len(expect_files) != len(events_files):
        raise click.UsageError("give one --expect per --events (in the same order), or none")
    loader = _load_or_fail(directory, errors_to_stderr=True)  # stdout is for actions (maybe --json)
    suites: list[JUnitSuite] = []
    total = 0
    for index, events_file in enumerate(events_files):
        expect_file = expect_files[index] if expect_files else None
        try:
            actions, first_ms = _run_file(ctx, directory, loader, events_file, until)
            expected = _expected(expect_file, first_ms) if expect_file else None
        except (InputError, CaptureError) as exc:
            raise click.ClickException(f"{events_file}: {exc}" if str(exc).startswith("record") else str(exc)) \
                from None
        suite = JUnitSuite(events_file)
        lines = [_action_line(action, as_json) for action in actions]
        for line in lines:
            click.echo(json.dumps({**json.loads(line), "events_file": events_file}, sort_keys=True,
                                  separators=(",", ":")) if as_json and len(events_files) > 1 else line)
        suite.output = "\n".join(lines)
        if expected is not None:
            differences = action_differences(actions, expected)
            for _, difference in differences:
                click.echo(f"{events_file}: {difference}" if len(events_files) > 1 else difference, err=True)
            suite.cases = _cases(expected, differences)
            total += len(differences)
            if not differences:
                click.echo(f"OK: {len(actions)} action(s) as expected" +
                           (f" ({events_file})" if len(events_files) > 1 else ""), err=True)
        else:
            suite.cases = [JUnitCase(f"rules run over {Path(events_file).name}")]
        suites.append(suite)
    if junit_file is not None:
        junit_file.write_bytes(junit_xml(suites))
    if total:
        what = expect_files[0] if len(expect_files) == 1 else f"{len(expect_files)} expectation files"
        raise click.ClickException(f"{total} difference(s) from {what}")


def _run_file(ctx: click.Context, directory: Path, loader: RuleSetLoader, events_file: str,
              until: str | None) -> tuple[list[dict[str, Any]], int]:
    """The actions one events file causes (as --json dicts) and the time of its first input."""
    records = list(read_jsonl(events_file))
    if records and is_capture_line(records[0]):
        capture = read_capture(events_file)
        first_ms = capture.time_range().from_ms
        until_ms = _time(until, first_ms, "--until") if until else None
        fired = replay_capture(capture, [directory], until_ms=until_ms, pipeline_config=_pipeline_config(ctx))
        return [_fired_dict(a) for a in fired], first_ms
    first_ms = min((r["time"] for r in records if isinstance(r.get("time"), int)), default=0)
    result = simulate(loader.ruleset, records, until_ms=_time(until, first_ms, "--until") if until else None)
    for failure in result.failures:
        click.echo(f"warning: {failure}", err=True)
    return [a.to_dict() for a in result.actions], first_ms


def _pipeline_config(ctx: click.Context) -> PipelineConfig:
    """The pipeline as the settings configure it (under `vigil`), else the defaults."""
    from app.cli import CliContext  # local: this module must import without the whole CLI

    cli_context = ctx.find_object(CliContext)
    if cli_context is None:
        return PipelineConfig.model_validate({})
    try:
        return PipelineConfig.from_settings(cli_context.settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _fired_dict(action: FiredAction) -> dict[str, Any]:
    """A backtest action in the --json/--expect line format."""
    return {"id": action.id, "rule": action.rule, "type": action.type, "target": action.target,
            "params": json.loads(action.params), "group_key": action.group_key, "event_id": action.event_id,
            "trace_id": action.trace_id, "time_ms": action.time_ms, "deadline_ms": action.deadline_ms}


def _action_line(action: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(action, sort_keys=True, separators=(",", ":"))
    params = json.dumps(action["params"], sort_keys=True)
    return f"{action['time_ms']} {action['rule']} {action['type']} -> {action['target']} {params}"


def _time(text: str, first_ms: int, what: str) -> int:
    """ms since the epoch, ISO-8601, or +DURATION after the first input."""
    from app.backtest.times import TimeSpecError, parse_time
    from app.model.events import now_ms

    try:
        return parse_time(str(text), now_ms=now_ms(), after_ms=first_ms, option=what)
    except TimeSpecError as exc:
        raise InputError(str(exc)) from None


def _expected(path: str, first_ms: int) -> list[dict[str, Any]]:
    """Expected actions; `at` (ms, ISO-8601, or +DURATION after the first input) becomes time_ms."""
    expected = []
    for number, line in enumerate(read_jsonl(path), 1):
        if "at" in line:
            at = line.pop("at")
            line["time_ms"] = at if isinstance(at, int) else _time(str(at), first_ms, f"{path}: expected #{number} at")
        expected.append(line)
    return expected


def _cases(expected: list[dict[str, Any]], differences: list[tuple[int | None, str]]) -> list[JUnitCase]:
    by_index: dict[int | None, list[str]] = {}
    for index, message in differences:
        by_index.setdefault(index, []).append(message)
    cases = []
    for i, e in enumerate(expected):
        at = f" at {format_time_ms(e['time_ms'])}" if isinstance(e.get("time_ms"), int) else ""
        name = f"expected #{i + 1}: {e.get('rule')} {e.get('type')} -> {e.get('target')}{at}"
        cases.append(JUnitCase(name, tuple(by_index.get(i, ()))))
    cases.append(JUnitCase("no unexpected actions", tuple(by_index.get(None, ()))))
    return cases
