"""`vigil topics apply|diff`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.bus.clients import BusUnavailable, wait_for_kafka
from app.cli import CliContext, pass_cli
from app.topics.admin import TopicAdminError, reconcile
from app.topics.spec import TopicsFileError, load_topics_file

__all__ = ["topics_group"]


@click.group("topics")
def topics_group() -> None:
    """Create and reconcile topics from topics.yaml (never deletes data)."""


def _run(cli: CliContext, path: str | None, *, dry_run: bool, allow_repartition: tuple[str, ...] = ()) -> None:
    s = cli.settings
    try:
        specs = load_topics_file(Path(path) if path else s.topics_file).with_prefix(s.topic_prefix).topics
        admin = wait_for_kafka(s, timeout_s=15)
        plan, done = reconcile(admin, specs, dry_run=dry_run,
                               allow_repartition={*allow_repartition, *map(s.topic, allow_repartition)})
    except (TopicsFileError, TopicAdminError, BusUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    for change in plan.changes:
        if change.action in ("warn", "refuse") or dry_run:
            click.echo(change.describe(), err=change.action == "refuse" and not dry_run)
    for line in done:
        click.echo(line)
    if plan.refused and not dry_run:
        raise click.ClickException(f"{len(plan.refused)} change(s) refused (see above); everything else is applied")
    if plan.empty and not plan.refused:
        click.echo("topics are up to date")
    elif dry_run:
        sys.exit(0)


@topics_group.command("apply")
@click.argument("path", required=False)
@click.option("--allow-repartition", multiple=True, metavar="TOPIC",
              help="grow this stateful topic although its keys then move away from their state (after the "
                   "README's migration; repeatable; with or without the topic prefix)")
@pass_cli
def topics_apply(cli: CliContext, path: str | None, allow_repartition: tuple[str, ...]) -> None:
    """Create missing topics, grow partitions, reconcile configs (idempotent). Growing a stateful
    topic is refused unless --allow-repartition names it."""
    _run(cli, path, dry_run=False, allow_repartition=allow_repartition)


@topics_group.command("diff")
@click.argument("path", required=False)
@pass_cli
def topics_diff(cli: CliContext, path: str | None) -> None:
    """Show what `apply` would change."""
    _run(cli, path, dry_run=True)
