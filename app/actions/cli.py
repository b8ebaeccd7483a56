"""`vigil actions`, `vigil trace ID` and `vigil silence add|list|remove`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import click
from confluent_kafka import KafkaException

from app.actions.history import HistoryError, load_history, load_trace_records
from app.actions.join import ActionRow, held_text, suppression_text
from app.actions.trace import TraceNode, build_trace, format_time, render_tree
from app.bus.clients import make_producer
from app.cli import CliContext, pass_cli, print_json
from app.durations import DurationError, format_duration_ms, parse_duration_ms
from app.globs import glob_matcher
from app.model.events import now_ms
from app.model.ids import new_id
from app.rules.silence_reader import read_silences
from app.rules.silences import Silence, SilenceError, encode_silence
from app.rules.topics import SILENCES_TOPIC
from app.web.client import ApiClient, api_client, api_option

__all__ = ["actions_command", "silence_group", "trace_command"]


def _since_ms(since: str, option: str = "--since") -> int:
    try:
        return now_ms() - parse_duration_ms(since)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _notice(command: str) -> Callable[[str], None]:
    """Where a read says that it waits for the schema registry: stderr."""
    return lambda text: click.echo(f"vigil {command}: {text}", err=True)


class _closing:
    """Close an ApiClient when the block ends."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def __enter__(self) -> ApiClient:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def _row_of(answer: dict[str, Any]) -> ActionRow:
    """An ActionRow from the API's form of one (ActionRow.to_dict)."""
    action = {k: v for k, v in answer.items() if k not in ("status", "results", "suppressed_by", "held_by")}
    if not isinstance(action.get("params"), str):
        action["params"] = json.dumps(action.get("params"), sort_keys=True, separators=(",", ":"))
    return ActionRow(action, list(answer.get("results") or []), answer.get("suppressed_by"), answer.get("held_by"))


def _row_line(row: ActionRow) -> str:
    a = row.action
    line = f"{format_time(a.get('time'))}  {a.get('rule')}  {a.get('type')} -> {a.get('target')}  {row.status}"
    result = row.result
    if row.suppressed is not None:
        line += f" {suppression_text(row.suppressed)}"
    elif row.held is not None:
        line += f" {held_text(row.held)}"
    elif result is not None and result.get("error"):
        line += f": {str(result['error']).splitlines()[0][:100]}"
    return f"{line}  [{a.get('id')}]"


@click.command("actions")
@click.option("--rule", default="*", show_default=True, help="rule name (glob)")
@click.option("--target", default="*", show_default=True, help="target (glob)")
@click.option("--since", default="1h", show_default=True, help="how far back, e.g. 30m, 24h, 7d")
@click.option("--suppressed", is_flag=True, help="list the actions silences, the storm guard or failing dependencies "
                   "suppressed instead")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="most recent N")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@api_option
@pass_cli
def actions_command(cli: CliContext, rule: str, target: str, since: str, suppressed: bool, limit: int,
                    as_json: bool, api_url: str | None) -> None:
    """List recent actions with their results (status PENDING until an executor reports)."""
    since_ms = _since_ms(since)
    client = api_client(api_url)
    if client is not None:
        with _closing(client):
            found = client.get("/actions", {"rule": rule, "target": target, "since": str(since_ms),
                                            "suppressed": str(suppressed).lower(), "limit": limit})["actions"]
        rows = [_row_of(a) for a in reversed(found)]
    else:
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
@api_option
@pass_cli
def trace_command(cli: CliContext, id_: str, since: str, as_json: bool, api_url: str | None) -> None:
    """Print the chain around ID (an event, action or result id): event → rule firing → action →
    result → follow-on events → their actions."""
    since_ms = _since_ms(since)
    client = api_client(api_url)
    tree: TraceNode | None
    if client is not None:
        with _closing(client):
            answer = client.get(f"/trace/{quote(id_, safe='')}", allow=(404,))
        tree = TraceNode.from_dict(answer["tree"]) if answer and "tree" in answer else None
    else:
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


def _silence_of(answer: dict[str, Any]) -> Silence:
    """A Silence from the API's form of one."""
    return Silence(id=answer["id"], match=dict(answer.get("match") or {}), rule=answer.get("rule"),
                   until_ms=int(answer["until_ms"]), reason=str(answer.get("reason", "")),
                   created_ms=int(answer.get("created_ms", 0)))


def _load(cli: CliContext, client: ApiClient | None = None) -> list[Silence]:
    if client is not None:
        return [_silence_of(s) for s in client.get("/silences", {"all": "true"})["silences"]]
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
@api_option
@pass_cli
def silence_add(cli: CliContext, matches: tuple[str, ...], rule: str | None, duration: str, reason: str,
                as_json: bool, api_url: str | None) -> None:
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
    client = api_client(api_url)
    if client is not None:
        with _closing(client):
            silence = _silence_of(client.post("/silences", {"match": list(matches), "rule": rule,
                                                             "duration": duration, "reason": reason}))
    else:
        _produce(cli, silence.id, encode_silence(silence))
    if as_json:
        print_json(silence.to_dict())
    else:
        click.echo(f"{silence.id}  until {format_time(silence.until_ms)}")


@silence_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="include silences that have ended")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@api_option
@pass_cli
def silence_list(cli: CliContext, show_all: bool, as_json: bool, api_url: str | None) -> None:
    """List active silences (with --all, also ended ones not yet removed)."""
    now = now_ms()
    client = api_client(api_url)
    try:
        silences = [s for s in _load(cli, client) if show_all or s.active(now)]
    finally:
        if client is not None:
            client.close()
    for s in silences:
        if as_json:
            print_json(s.to_dict())
        else:
            click.echo(_silence_line(s, now))
    if not silences and not as_json:
        click.echo("no active silences" if not show_all else "no silences", err=True)


@silence_group.command("remove")
@click.argument("silence_id")
@api_option
@pass_cli
def silence_remove(cli: CliContext, silence_id: str, api_url: str | None) -> None:
    """End a silence now (SILENCE_ID or a unique prefix of it)."""
    client = api_client(api_url)
    try:
        known = [s for s in _load(cli, client) if s.id.startswith(silence_id)]
        if client is not None:  # the API ends a silence and keeps it listed as ended
            known = [s for s in known if s.active(now_ms())]
        exact = [s for s in known if s.id == silence_id]
        if exact:
            known = exact
        if not known:
            raise click.ClickException(f"no silence {silence_id} (see `vigil silence list --all`)")
        if len(known) > 1:
            raise click.ClickException(f"{silence_id} is ambiguous: {', '.join(s.id for s in known)}")
        if client is not None:
            client.delete(f"/silences/{quote(known[0].id, safe='')}")
        else:
            _produce(cli, known[0].id, None)
    finally:
        if client is not None:
            client.close()
    click.echo(f"removed {known[0].id}")
