"""`vigil schemas register|check|list` (record-name subject strategy, as on the events topic)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli import CliContext, pass_cli
from app.model.schemas import SchemaFileError
from app.registry.client import RegistryClient, RegistryError
from app.registry.files import check_schema, collect_schema_files, register_schemas

__all__ = ["EXIT_REFUSED", "schemas_group"]

#: Exit status of `schemas register` when the registry refused a schema (incompatible): retrying
#: cannot help, unlike exit 1 (the registry unreachable, a file unreadable). The chart's schemas
#: Job fails at once on it (podFailurePolicy) and retries the rest.
EXIT_REFUSED = 3


@click.group("schemas")
def schemas_group() -> None:
    """Register and check Avro schemas (.avsc) with the schema registry."""


def _client(cli: CliContext) -> RegistryClient:
    return RegistryClient.from_settings(cli.settings)


@schemas_group.command("register")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@pass_cli
def schemas_register(cli: CliContext, paths: tuple[Path, ...]) -> None:
    """Register .avsc files (default: all of schemas/). Incompatible changes are refused (exit 3)."""
    try:
        schemas = collect_schema_files(list(paths) or [cli.settings.schemas_dir])
        results = register_schemas(_client(cli), schemas)
    except (SchemaFileError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            click.echo(f"REFUSED {r.subject}: {r.error}", err=True)
        else:
            click.echo(f"{r.subject}  id={r.schema_id}")
    sys.exit(EXIT_REFUSED if failed else 0)


@schemas_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_cli
def schemas_check(cli: CliContext, path: Path) -> None:
    """Report compatibility with the latest registered version, without registering."""
    try:
        (schema,) = collect_schema_files([path])
        report = check_schema(_client(cli), schema)
    except (SchemaFileError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    if report.is_compatible:
        click.echo(f"{schema.fullname}: compatible")
        for m in report.messages:
            click.echo(f"  {m}")
        return
    click.echo(f"{schema.fullname}: INCOMPATIBLE", err=True)
    for m in report.messages:
        click.echo(f"  {m}", err=True)
    sys.exit(1)


@schemas_group.command("list")
@pass_cli
def schemas_list(cli: CliContext) -> None:
    """Subjects with their latest version and id."""
    client = _client(cli)
    try:
        for subject in sorted(client.subjects()):
            latest = client.version(subject, "latest")
            click.echo(f"{subject}  version={latest.version}  id={latest.id}")
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
