"""`vigil lookup KEY --subject S [--name N] [--tag k=v ...] [--merge M] [--json] [--rules DIR]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.lookups.loader import load_lookups
from app.lookups.resolve import MERGES, Answer, LookupData
from app.rules.fields import EVENT_TYPE, MISSING

__all__ = ["describe_answer", "lookup_command"]


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: give a tag as KEY=VALUE, e.g. --tag role=db", param_hint="--tag")
        tags[key] = value
    return tags


def describe_answer(answer: Answer, data: LookupData) -> dict[str, Any]:
    """An answer as plain JSON values: the value, the levels that answered and every level consulted."""
    return {
        "key": answer.key, "merge": answer.merge, "found": answer.found,
        "value": answer.value if answer.found else None,
        "answered_by": [{"level": s.path, "file": s.file, "line": s.line} for s in answer.sources],
        "levels": [{"level": path, "file": data.files[path].file if path in data.files else None}
                   for path in answer.paths],
    }


def _text(answer: Answer, data: LookupData) -> list[str]:
    value = json.dumps(answer.value, sort_keys=True) if answer.found else "(no value)"
    lines = [f"{answer.key} = {value}"]
    if answer.found:
        how = "answered by" if answer.merge == "first" else f"merged ({answer.merge}) from"
        lines.append(f"  {how}:")
        lines += [f"    {s.path}  ({s.file}:{s.line})" for s in answer.sources]
    lines.append("  levels, most specific first:")
    contributed = {s.path for s in answer.sources}
    for path in answer.paths:
        data_file = data.files.get(path)
        where = data_file.file if data_file is not None else "no data file"
        mark = "*" if path in contributed else " "
        lines.append(f"  {mark} {path}  ({where})")
    skipped = len(data.hierarchy.levels) - len(answer.paths)
    if skipped:
        lines.append(f"  ({skipped} level(s) skipped: the event lacks a field they need)")
    return lines


@click.command("lookup")
@click.argument("key")
@click.option("--subject", required=True, help="the event's subject (usually a host)")
@click.option("--name", "event_name", default="", help="the event's name (for levels that use it)")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="an event tag; repeatable")
@click.option("--merge", type=click.Choice(MERGES), default="first", show_default=True,
              help="first match, or merge every level's value (unique arrays, hash shallow, deep)")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the rules directory holding hierarchy.yaml and data/ (default: the configured rules_dir)")
@click.option("--json", "as_json", is_flag=True, help="the answer as one JSON object")
@click.pass_context
def lookup_command(ctx: click.Context, key: str, subject: str, event_name: str, tags: tuple[str, ...], merge: str,
                   rules_dir: Path | None, as_json: bool) -> None:
    """Look KEY up for an event like the one described, as rules' lookup(KEY) would, and show which
    level (file:line) answered; for merges, every level that contributed. Exit 1 when nothing does."""
    from app.rules.cli import default_rules_dir  # local: as the CLI's other groups, imported when run

    data, errors = load_lookups(default_rules_dir(ctx, rules_dir))
    for error in errors:
        click.echo(f"warning: {error} (this file is not used)", err=True)
    event = {"subject": subject, "name": event_name, "tags": _tags(tags), "metrics": {}, "time": 0}
    answer = data.lookup(key, event, EVENT_TYPE, merge)
    if as_json:
        click.echo(json.dumps(describe_answer(answer, data), sort_keys=True))
    else:
        for line in _text(answer, data):
            click.echo(line)
    if answer.value is MISSING:
        raise SystemExit(1)
