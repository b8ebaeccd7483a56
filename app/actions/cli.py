"""`vigil actions`, `vigil trace ID` and `vigil silence add|list|remove`."""

from __future__ import annotations

from collections.abc import Callable

import click
from confluent_kafka import KafkaException

from app.actions.history import HistoryError, load_history, load_trace_records
from app.actions.join import ActionRow, suppression_text
from app.actions.trace import build_trace, format_time, render_tree
from app.bus.clients import make_producer
from app.cli import CliContext, pass_cli, print_json
from app.durations import DurationError, format_duration_ms, parse_duration_ms
from app.globs import glob_matcher
from app.model.events import now_ms
from app.model.ids import new_id
from app.rules.silence_reader import read_silences
from app.rules.silences import Silence, SilenceError, encode_silence
from app.rules.topics import SILENCES_TOPIC

__all__ = ["actions_command", "silence_group", "trace_command"]


def _since_ms(since: str, option: str = "--since") -> int:
    try:
        return now_ms() - parse_duration_ms(since)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _notice(command: str) -> Callable[[str], None]:
    """Where a read says that it waits for the schema registry: stderr."""
    return lambda text: click.echo(f"vigil {command}: {text}", err=True)


def _row_line(row: ActionRow) -> str:
    a = row.action
    line = f"{format_time(a.get('time'))}  {a.get('rule')}  {a.get('type')} -> {a.get('target')}  {row.status}"
    result = row.result
    if row.suppressed is not None:
        line += f" {suppression_text(row.suppressed)}"
    elif result is not None and result.get("error"):
        line += f": {str(result['error']).splitlines()[0][:100]}"
    return f"{line}  [{a.get('id')}]"


@click.command("actions")
@click.option("--rule", default="*", show_default=True, help="rule name (glob)")
@click.option("--target", default="*", show_default=True, help="target (glob)")
@click.option("--since", default="1h", show_default=True, help="how far back, e.g. 30m, 24h, 7d")
@click.option("--suppressed", is_flag=True, help="list the actions silences or the storm guard suppressed instead")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="most recent N")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_cli
def actions_command(cli: CliContext, rule: str, target: str, since: str, suppressed: bool, limit: int,
                    as_json: bool) -> None:
    """List recent actions with their results (status PENDING until an executor reports)."""
    since_ms = _since_ms(since)
    try:
        history = load_history(cli.settings, since_ms, notify=_notice("actions"))
    except (HistoryError, KafkaException) as exc:
        raise click.ClickException(str(exc)) from exc
    match_rule, match_target = glob_matcher(rule), glob_matcher(target)
    rows = [r for r in history.rows()
            if (r.suppressed is not None) == suppressed
            and match_rule(str(r.action.get("rule"))) and match_target(str(r.action.get("target")))][-limit:]
    for row in rows:
        if as_json:
            print_json(row.to_dict())
        else:
            click.echo(_row_line(row))
    if not rows and not as_json:
        what = "suppressed actions" if suppressed else "actions"
        click.echo(f"no {what} since {format_time(since_ms)} matching --rule {rule} --target {target}", err=True)


@click.command("trace")
@click.argument("id_", metavar="ID")
@click.option("--since", default="24h", show_default=True, help="how far back to look")
@click.option("--json", "as_json", is_flag=True, help="the tree as one JSON document")
@pass_cli
def trace_command(cli: CliContext, id_: str, since: str, as_json: bool) -> None:
    """Print the chain around ID (an event, action or result id): event → rule firing → action →
    result → follow-on events → their actions."""
    since_ms = _since_ms(since)
    try:
        records = load_trace_records(cli.settings, id_, since_ms, notify=_notice("trace"))
    except (HistoryError, KafkaException) as exc:
        raise click.ClickException(str(exc)) from exc
    tree = build_trace(id_, records)
    if tree is None:
        raise click.ClickException(f"no event, action or result with id {id_} since {format_time(since_ms)} "
                                   "(try a longer --since)")
    if as_json:
        print_json(tree.to_dict())
    else:
        for line in render_tree(tree):
            click.echo(line)


@click.group("silence")
def silence_group() -> None:
    """Maintenance windows: matching actions are suppressed (and recorded) instead of sent."""


def _parse_matches(matches: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in matches:
        key, sep, pattern = raw.partition("=")
        if not sep or not key or not pattern:
            raise click.BadParameter(f"{raw!r}: expected FIELD=GLOB, e.g. subject=web1 or tags.env=prod",
                                     param_hint="--match")
        out[key.strip()] = pattern
    return out


def _produce(cli: CliContext, key: str, value: bytes | None) -> None:
    producer = make_producer(cli.settings)
    producer.produce(cli.settings.topic(SILENCES_TOPIC), value, key.encode())
    if producer.flush(30):
        raise click.ClickException(f"Kafka at {cli.settings.kafka_bootstrap} did not acknowledge the write "
                                   f"to {cli.settings.topic(SILENCES_TOPIC)} within 30s")


def _load(cli: CliContext) -> list[Silence]:
    try:
        return read_silences(cli.settings).all()
    except (TimeoutError, KafkaException) as exc:
        raise click.ClickException(f"cannot read {cli.settings.topic(SILENCES_TOPIC)}: {exc}") from exc


def _silence_line(s: Silence, now: int) -> str:
    match = " ".join(f"{k}={v}" for k, v in s.match.items())
    rule = f" rule={s.rule}" if s.rule else ""
    left = f"{format_duration_ms(s.until_ms - now)} left" if s.active(now) else "ended"
    return f"{s.id}  until {format_time(s.until_ms)} ({left})  {match}{rule}  — {s.reason}"


@silence_group.command("add")
@click.option("--match", "matches", multiple=True, metavar="FIELD=GLOB",
              help="repeatable; event fields (subject, name, tags.K, ...) or target, action, group")
@click.option("--rule", help="rule name (glob); default: every rule")
@click.option("--for", "duration", required=True, help="how long, e.g. 30m, 2h, 1d")
@click.option("--reason", required=True, help="why (shown in listings and suppressed actions)")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def silence_add(cli: CliContext, matches: tuple[str, ...], rule: str | None, duration: str, reason: str,
                as_json: bool) -> None:
    """Start a silence now; prints its id."""
    try:
        length_ms = parse_duration_ms(duration)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    now = now_ms()
    try:
        silence = Silence(id=new_id(now), match=_parse_matches(matches), rule=rule, until_ms=now + length_ms,
                          reason=reason, created_ms=now)
    except SilenceError as exc:
        raise click.ClickException(str(exc)) from exc
    _produce(cli, silence.id, encode_silence(silence))
    if as_json:
        print_json(silence.to_dict())
    else:
        click.echo(f"{silence.id}  until {format_time(silence.until_ms)}")


@silence_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="include silences that have ended")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_cli
def silence_list(cli: CliContext, show_all: bool, as_json: bool) -> None:
    """List active silences (with --all, also ended ones not yet removed)."""
    now = now_ms()
    silences = [s for s in _load(cli) if show_all or s.active(now)]
    for s in silences:
        if as_json:
            print_json(s.to_dict())
        else:
            click.echo(_silence_line(s, now))
    if not silences and not as_json:
        click.echo("no active silences" if not show_all else "no silences", err=True)


@silence_group.command("remove")
@click.argument("silence_id")
@pass_cli
def silence_remove(cli: CliContext, silence_id: str) -> None:
    """End a silence now (SILENCE_ID or a unique prefix of it)."""
    known = [s for s in _load(cli) if s.id.startswith(silence_id)]
    exact = [s for s in known if s.id == silence_id]
    if exact:
        known = exact
    if not known:
        raise click.ClickException(f"no silence {silence_id} (see `vigil silence list --all`)")
    if len(known) > 1:
        raise click.ClickException(f"{silence_id} is ambiguous: {', '.join(s.id for s in known)}")
    _produce(cli, known[0].id, None)
    click.echo(f"removed {known[0].id}")
