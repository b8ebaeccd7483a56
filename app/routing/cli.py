"""`vigil routes list [DIR]` and `vigil routes test EVENTS.jsonl [--rules DIR] [--json]`: the routes of a
rules directory, and which routes each recorded event would take (sampling applied), offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.routing.loader import RouteSet, load_routes
from app.routing.router import Router
from app.rules.cli import default_rules_dir
from app.rules.fields import EVENT_TYPE
from app.rules.offline import InputError, read_jsonl

__all__ = ["routes_group"]


def _load_or_fail(rules_dir: Path) -> RouteSet:
    routes = load_routes(rules_dir)
    for error in routes.errors:
        click.echo(str(error), err=True)
    if routes.errors:
        raise click.ClickException(f"{len(routes.errors)} error(s) in {rules_dir}/routes; fix them and run again")
    return routes


@click.group("routes")
def routes_group() -> None:
    """List routes and test which routes events take."""


@routes_group.command("list")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def list_command(ctx: click.Context, directory: Path | None) -> None:
    """The routes of DIRECTORY/routes (default: the configured rules_dir), one per line."""
    rules_dir = default_rules_dir(ctx, directory)
    routes = _load_or_fail(rules_dir)
    for route in routes:
        click.echo(f"{route.describe()}    {route.location}")
    click.echo(f"{len(routes)} route(s), {sum(r.enabled for r in routes)} enabled", err=True)


@routes_group.command("test")
@click.argument("events_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--rules", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="rules directory whose routes/ to use (default: the configured rules_dir)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per event: {subject, name, routes, sampled_out}")
@click.pass_context
def test_command(ctx: click.Context, events_file: Path, directory: Path | None, as_json: bool) -> None:
    """Which routes each event of EVENTS_FILE (JSONL, one event per line; `type` for custom records)
    would take, sampling applied (by the key `subject/name`, or by `id`)."""
    router = Router(_load_or_fail(default_rules_dir(ctx, directory)))
    try:
        for event in read_jsonl(events_file):
            event_type = event.pop("type", EVENT_TYPE)
            key = f"{event.get('subject', '')}/{event.get('name', '')}".encode()
            raw = json.dumps(event, sort_keys=True).encode()
            decision = router.decide(event, str(event_type), key, raw)
            line: dict[str, Any] = {"subject": event.get("subject"), "name": event.get("name"),
                                    "routes": [f"{r.name} -> {r.to}" for r in decision.taken],
                                    "sampled_out": [r.name for r in decision.sampled_out]}
            if as_json:
                click.echo(json.dumps(line))
                continue
            taken = ", ".join(line["routes"]) or "no route"
            out = f" (sampled out of {', '.join(line['sampled_out'])})" if decision.sampled_out else ""
            click.echo(f"{key.decode()}: {taken}{out}")
    except InputError as exc:
        raise click.ClickException(str(exc)) from exc
