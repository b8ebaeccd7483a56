"""`vigil emit` and `vigil events tail`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from pydantic import ValidationError

from app.cli import CliContext, parse_pairs, pass_cli, print_json
from app.model.events import Event, Kind
from app.model.serde import DecodeError
from app.pipeline.validate import format_time_ms
from app.sdk import EmitError, Emitter, tail_events

__all__ = ["emit_command", "events_group", "format_event_line"]


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


@click.command("emit")
@click.argument("subject")
@click.argument("name")
@click.option("--kind", type=click.Choice(["metric", "status", "archive"], case_sensitive=False), default="status",
              show_default=True)
@click.option("--severity", type=click.IntRange(0, 3), default=0, show_default=True,
              help="0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
@click.option("--metric", "metrics", multiple=True, metavar="NAME=NUMBER", help="repeatable")
@click.option("--tag", "tags", multiple=True, metavar="NAME=VALUE", help="repeatable")
@click.option("--text", default="", help="human-readable message")
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), help="seconds until the next event is due")
@click.option("--origin", default="cli", show_default=True)
@click.option("--extended", "extended_json", metavar="JSON", help="extended data (a JSON object)")
@click.option("--type", "type_name", metavar="FULLNAME", help="a registered custom record type")
@click.option("--data", "data_json", metavar="JSON", help="fields of --type as a JSON object")
@pass_cli
def emit_command(cli: CliContext, subject: str, name: str, kind: str, severity: int, metrics: tuple[str, ...],
                 tags: tuple[str, ...], text: str, ttl: float | None, origin: str, extended_json: str | None,
                 type_name: str | None, data_json: str | None) -> None:
    """Produce one event and print its id."""
    metric_values = parse_pairs(metrics, option="--metric", numeric=True)
    tag_values = parse_pairs(tags, option="--tag")
    if data_json is not None and type_name is None:
        raise click.BadParameter("--data needs --type FULLNAME", param_hint="--data")
    if type_name is not None:
        data = _json_object(data_json or "{}", "--data")
        record = {**data, "subject": subject, "name": name}
        with_emitter = lambda em: em.emit_typed(type_name, record)  # noqa: E731
    else:
        try:
            event = Event(subject=subject, name=name, kind=Kind(kind.upper()), severity=severity,
                          metrics=metric_values, tags=tag_values, text=text, ttl=ttl, origin=origin,
                          extended=_json_object(extended_json, "--extended") if extended_json else None)
        except ValidationError as exc:
            raise click.ClickException(f"invalid event: {_validation_message(exc)}") from exc
        with_emitter = lambda em: em.emit(event)  # noqa: E731
    try:
        emitter = Emitter(cli.settings)
        click.echo(with_emitter(emitter))
        emitter.close()
    except EmitError as exc:
        raise click.ClickException(str(exc)) from exc


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc.msg} at column {exc.colno}", param_hint=option) from exc
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


@click.group("events")
def events_group() -> None:
    """Read events."""


@events_group.command("tail")
@click.option("--from-beginning", is_flag=True, help="start at the oldest retained event")
@click.option("--subject", default="*", show_default=True, help="glob")
@click.option("--name", default="*", show_default=True, help="glob")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_cli
def events_tail(cli: CliContext, from_beginning: bool, subject: str, name: str, as_json: bool) -> None:
    """Print decoded events as they arrive (Ctrl-C stops). Records that cannot be decoded are named
    on stderr (topic[partition]@offset and why); while the schema registry is unavailable the tail
    waits for it and says so on stderr."""
    def undecodable(exc: DecodeError) -> None:
        click.echo(f"skipped: {exc}", err=True)

    def notice(text: str) -> None:
        click.echo(f"vigil events tail: {text}", err=True)

    try:
        for ev in tail_events(cli.settings, from_beginning=from_beginning, subject=subject, name=name,
                              on_undecodable=undecodable, notify=notice):
            if as_json:
                print_json(ev.as_json())  # machines get the number
            else:
                click.echo(format_event_line(ev.type, ev.record))
            sys.stdout.flush()
    except EmitError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


def format_event_line(type_name: str, record: dict[str, Any]) -> str:
    """One event as `events tail` prints it: time as ISO-8601 UTC, type, identity, severity, metrics, text."""
    t = record.get("time")
    when = format_time_ms(t) if isinstance(t, int) and not isinstance(t, bool) else str(t)
    metrics = " ".join(f"{k}={v:g}" for k, v in (record.get("metrics") or {}).items())
    return (f"{when} {type_name} {record.get('subject')}/{record.get('name')} "
            f"sev={record.get('severity', '-')} {metrics} {record.get('text') or ''}").rstrip()


def _attach_pipeline_commands() -> None:
    """`events get` / `events find` live with the archive index they query (app/pipeline)."""
    from app.pipeline.cli import events_find_command, events_get_command

    events_group.add_command(events_get_command, "get")
    events_group.add_command(events_find_command, "find")


_attach_pipeline_commands()
