"""`vigil gate check|wait|list`, `vigil runs [show|cancel|pause|resume]` and `vigil approve`.

Gates are asked of the Vigil API (`vigil ui`, which records each decision) when it answers, else
judged here from the rules directory against the workers' query routes (and recorded from here).
Exit codes of `gate check` and `gate wait`: 0 open, 1 closed, 2 when no decision could be made.

Runs are read from the compacted `run-states` topic; commands go to `runs` (signed with
VIGIL_ACTION_SIGNING_KEY when one is set, as the orchestrator then requires).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from app.api_token import ApiTokenError, load_api_token
from app.cli import CliContext, pass_cli, print_json
from app.durations import DurationError, format_duration_ms, parse_duration_ms
from app.orchestration.conditions import describe_time
from app.orchestration.definitions import load_definitions
from app.orchestration.gates import GateDecision
from app.orchestration.records import RUN_STATES_TOPIC, RUNS_TOPIC, command, sign_record, user_name
from app.orchestration.sources import WorkersSource, judge_gate
from app.orchestration.tailer import read_compacted
from app.pipeline.cli import worker_option, worker_urls
from app.web.client import ApiClient, api_client, api_option
from app.web.workers import WorkersClient

__all__ = ["approve_command", "gate_group", "runs_group"]

_UNDECIDED = 2


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(_UNDECIDED)


def _duration(text: str, option: str) -> int:
    try:
        return parse_duration_ms(text)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


# -- gates -----------------------------------------------------------------------------------------------
@click.group("gate")
def gate_group() -> None:
    """Gates: conditions a deploy (or anything) waits on, declared beside the rules."""


def _rules_dir(cli: CliContext, given: Path | None) -> Path:
    return given or Path(cli.settings.rules_dir)


def _ask_api(api: ApiClient, name: str, *, record: bool) -> dict[str, Any]:
    status, body = api._call("GET", f"/gates/{name}", params={"record": str(record).lower()})
    if status == 404:
        _fail(str(body.get("error")) if isinstance(body, dict) else f"no gate called {name!r}")
    if status >= 400 or not isinstance(body, dict):
        _fail(f"{api.url}: {body.get('error') if isinstance(body, dict) else f'HTTP {status}'}")
    return body


def _judge_here(cli: CliContext, name: str, rules: Path, workers: tuple[str, ...], *, record: bool) -> dict[str, Any]:
    definitions = load_definitions(rules)
    gate = definitions.gates.get(name)
    if gate is None:
        problems = [str(e) for e in definitions.errors if "gate" in e.message]
        _fail(f"no gate called {name!r} in {rules}" + (": " + "; ".join(problems[:3]) if problems else ""))
    try:
        token = load_api_token()
    except ApiTokenError as exc:
        _fail(str(exc))

    async def judge() -> GateDecision:
        client = WorkersClient(worker_urls(workers), token=token)
        try:
            return await judge_gate(gate, WorkersSource(client), int(time.time() * 1000))
        finally:
            await client.close()

    decision = asyncio.run(judge())
    answer = decision.to_json()
    if record:
        from app.sdk import EmitError, Emitter

        try:
            emitter = Emitter(cli.settings, registry_wait_s=10.0)
            answer["recorded"] = emitter.emit(decision.event())
            emitter.producer.flush(10)
        except EmitError as exc:
            click.echo(f"warning: the decision was not recorded: {exc}", err=True)
    return answer


def _decide(cli: CliContext, name: str, api_url: str | None, rules: Path | None, workers: tuple[str, ...], *,
            record: bool) -> dict[str, Any]:
    api = api_client(api_url)
    if api is not None:
        try:
            return _ask_api(api, name, record=record)
        finally:
            api.close()
    return _judge_here(cli, name, _rules_dir(cli, rules), workers, record=record)


def _print(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    click.echo(f"gate {answer['gate']}: {str(answer['state']).upper()} at {describe_time(answer.get('time'))}")
    for c in answer.get("conditions", []):
        mark = "ok  " if c.get("ok") else ("wait" if c.get("holds") else "FAIL")
        click.echo(f"  [{mark}] {c.get('label')}: {c.get('reason')}")
    for problem in answer.get("problems", []):
        click.echo(f"  [FAIL] {problem}")


def _exit_code(answer: dict[str, Any]) -> int:
    """0 open, 1 closed, 2 when it could not be judged (the source did not answer)."""
    if answer.get("open"):
        return 0
    return _UNDECIDED if answer.get("problems") else 1


_rules_option = click.option("--rules", "rules", type=click.Path(file_okay=False, path_type=Path),
                             help="rules directory with the gates (when the API does not answer; default "
                                  "the configured rules_dir)")


@gate_group.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="the decision as one JSON object")
@click.option("--no-record", is_flag=True, help="do not record the decision as an event")
@_rules_option
@worker_option
@api_option
@pass_cli
def gate_check_command(cli: CliContext, name: str, as_json: bool, no_record: bool, rules: Path | None,
                       workers: tuple[str, ...], api_url: str | None) -> None:
    """Decide gate NAME now: exit 0 when open, 1 when closed (2: no decision), printing each
    condition and why."""
    answer = _decide(cli, name, api_url, rules, workers, record=not no_record)
    _print(answer, as_json)
    sys.exit(_exit_code(answer))


@gate_group.command("wait")
@click.argument("name")
@click.option("--timeout", "timeout", default="30m", show_default=True, help="give up (exit 1) after this long")
@click.option("--interval", "interval", default="10s", show_default=True, help="ask again this often")
@click.option("--json", "as_json", is_flag=True, help="the final decision as one JSON object")
@_rules_option
@worker_option
@api_option
@pass_cli
def gate_wait_command(cli: CliContext, name: str, timeout: str, interval: str, as_json: bool, rules: Path | None,
                      workers: tuple[str, ...], api_url: str | None) -> None:
    """Block until gate NAME is open (exit 0) or --timeout passes (exit 1): for CI pipelines.
    Prints each change; records only the final decision."""
    timeout_ms, interval_ms = _duration(timeout, "--timeout"), _duration(interval, "--interval")
    deadline = time.monotonic() + timeout_ms / 1000
    last_state = None
    while True:
        answer = _decide(cli, name, api_url, rules, workers, record=False)
        summary = (answer.get("state"), tuple(c.get("ok") for c in answer.get("conditions", [])))
        if summary != last_state and not as_json:
            _print(answer, False)
        last_state = summary
        if answer.get("open") or time.monotonic() >= deadline:
            break
        time.sleep(min(interval_ms / 1000, max(0.0, deadline - time.monotonic())))
    final = _decide(cli, name, api_url, rules, workers, record=True)  # the outcome, recorded
    if as_json:
        print_json(final)
    elif not final.get("open"):
        click.echo(f"gate {name}: still closed after {format_duration_ms(timeout_ms)}", err=True)
    sys.exit(_exit_code(final))


@gate_group.command("list")
@_rules_option
@pass_cli
def gate_list_command(cli: CliContext, rules: Path | None) -> None:
    """The gates of the rules directory, with their conditions (and any definition errors)."""
    directory = _rules_dir(cli, rules)
    definitions = load_definitions(directory)
    for gate in sorted(definitions.gates.values(), key=lambda g: g.name):
        click.echo(f"{gate.name}  ({gate.location}) {gate.description}")
        for condition in gate.conditions:
            click.echo(f"  - {condition.label}")
    for error in definitions.errors:
        click.echo(str(error), err=True)
    if not definitions.gates:
        click.echo(f"no gates in {directory}", err=True)


# -- runs -------------------------------------------------------------------------------------------------
def _read_runs(cli: CliContext) -> dict[str, dict[str, Any]]:
    try:
        return read_compacted(cli.settings, RUN_STATES_TOPIC, decode=lambda _k, raw: json.loads(raw), timeout_s=30)
    except Exception as exc:  # Kafka down, topic missing
        raise click.ClickException(f"cannot read {cli.settings.topic(RUN_STATES_TOPIC)}: {exc}") from exc


def _find(runs: dict[str, dict[str, Any]], run_id: str) -> dict[str, Any]:
    found = [r for key, r in runs.items() if key.startswith(run_id)]
    if not found:
        raise click.ClickException(f"no run {run_id} (vigil runs lists them)")
    if len(found) > 1:
        raise click.ClickException(f"{run_id} names {len(found)} runs; give more of the id")
    return found[0]


def _progress(run: dict[str, Any]) -> str:
    counts = run.get("counts") or {}
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


@click.group("runs", invoke_without_command=True)
@click.option("--state", "states", multiple=True, help="only runs in this state (running, paused, succeeded, ...)")
@click.option("--json", "as_json", is_flag=True, help="one run per line as JSON")
@click.pass_context
def runs_group(ctx: click.Context, states: tuple[str, ...], as_json: bool) -> None:
    """Runbook runs and rolls: list them (newest first), or show, cancel, pause and resume one."""
    if ctx.invoked_subcommand is not None:
        return
    cli = ctx.find_object(CliContext)
    assert cli is not None
    wanted = {s.lower() for s in states}
    runs = sorted(_read_runs(cli).values(), key=lambda r: -int(r.get("created_ms") or 0))
    shown = [r for r in runs if not wanted or r.get("state") in wanted]
    if as_json:
        for run in shown:
            print_json({k: v for k, v in run.items() if k != "lanes"})
        return
    if not shown:
        click.echo("no runs" + (f" in state {', '.join(sorted(wanted))}" if wanted else ""), err=True)
        return
    for run in shown:
        click.echo(f"{run['id']}  {run.get('state', '?'):<9} {run.get('name')}  {_progress(run)}  "
                   f"started {describe_time(run.get('created_ms'))}  {run.get('reason') or ''}".rstrip())


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="the whole run as JSON")
@pass_cli
def runs_show_command(cli: CliContext, run_id: str, as_json: bool) -> None:
    """A run's steps per lane (member), their results, who approved, and its log."""
    run = _find(_read_runs(cli), run_id)
    if as_json:
        print_json(run)
        return
    click.echo(f"run {run['id']}: {run.get('name')} {str(run.get('state')).upper()}  {run.get('reason') or ''}")
    click.echo(f"  rule {run.get('rule') or '-'}  trace {run.get('trace_id') or '-'}  target {run.get('target') or '-'}"
               f"  lanes {run.get('lanes')}: {_progress(run)}")
    if run.get("roll"):
        roll = run["roll"]
        click.echo(f"  roll over {roll.get('members')}: concurrency {roll.get('concurrency')}, splay "
                   f"{format_duration_ms(int(roll.get('splay_ms') or 0))}, max_failures {roll.get('max_failures')}")
    steps = run.get("steps") or []
    for lane in run.get("lanes", []):
        click.echo(f"  {lane['target']}: {lane['state']}" + (f" ({lane['reason']})" if lane.get("reason") else ""))
        for name in steps:
            record = (lane.get("steps") or {}).get(name)
            if record is None:
                continue
            who = f" by {record['by']}" if record.get("by") else ""
            text = record.get("error") or record.get("output") or record.get("reason") or record.get("message") or ""
            click.echo(f"    {name}: {record.get('status')}{who}  {str(text).splitlines()[0] if text else ''}"
                       .rstrip())
    if run.get("lanes_shown", 0) < run.get("lanes", 0):
        click.echo(f"  ... {run['lanes'] - run['lanes_shown']} more lanes not shown")
    for entry in run.get("log", [])[-10:]:
        click.echo(f"  {describe_time(entry.get('time'))} {entry.get('text')}")


def _send(cli: CliContext, kind: str, run_id: str, **fields: Any) -> None:
    from app.bus.clients import make_producer
    from app.rules.signing_key import SigningKeyError, load_signing_key

    run = _find(_read_runs(cli), run_id)
    try:
        key = load_signing_key()
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    record = sign_record(command(kind, run["id"], by=user_name(), **fields), key)
    producer = make_producer(cli.settings)
    producer.produce(cli.settings.topic(RUNS_TOPIC), json.dumps(record).encode(), run["id"].encode())
    if producer.flush(15):
        raise click.ClickException(f"Kafka at {cli.settings.kafka_bootstrap} did not take the command")
    click.echo(f"{kind} sent for run {run['id']} ({run.get('name')}, {run.get('state')}) as {record['by']}")


@runs_group.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="", help="why (kept in the run's log)")
@pass_cli
def runs_cancel_command(cli: CliContext, run_id: str, reason: str) -> None:
    """Cancel a run: no new step starts; a step already running finishes first."""
    _send(cli, "cancel", run_id, reason=reason)


@runs_group.command("pause")
@click.argument("run_id")
@pass_cli
def runs_pause_command(cli: CliContext, run_id: str) -> None:
    """Pause a run: no member starts and no lane enters a new step until it is resumed."""
    _send(cli, "pause", run_id)


@runs_group.command("resume")
@click.argument("run_id")
@pass_cli
def runs_resume_command(cli: CliContext, run_id: str) -> None:
    """Resume a paused run."""
    _send(cli, "resume", run_id)


@click.command("approve")
@click.argument("run_id")
@click.option("--reject", is_flag=True, help="reject instead (the step fails; its on_failure decides)")
@click.option("--comment", default="", help="kept with the approval")
@click.option("--step", default=None, help="only this step (default: every step waiting for approval)")
@click.option("--member", default=None, help="only this member's lane (rolls)")
@pass_cli
def approve_command(cli: CliContext, run_id: str, reject: bool, comment: str, step: str | None,
                    member: str | None) -> None:
    """Approve (or --reject) the steps of run RUN_ID waiting for approval, as VIGIL_USER (or your
    login name): only names the step's `approvers` list count."""
    _send(cli, "approve", run_id, approved=not reject, comment=comment, step=step, member=member)
