"""Every command README.md shows works as written: each `vigil ...` parses with Vigil's real CLI
(every subcommand, option and value checked by click; nothing runs, so no stack is needed), and each
benchmark accepts every flag shown. A README command with a flag that does not exist fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from app.cli import cli, hoist_global_options
from tests.conftest import REPO
from tests.unit.docs.readme_commands import ReadmeCommand, readme_commands

COMMANDS = readme_commands(REPO / "README.md")
VIGIL = [c for c in COMMANDS if c.program == "vigil"]
BENCHMARKS = [c for c in COMMANDS if c.program != "vigil"]


def test_the_readme_shows_commands_of_both_kinds() -> None:
    assert len(VIGIL) >= 30 and {c.program for c in BENCHMARKS} >= {"benchmarks/run.py", "benchmarks/beacons.py"}


def readers_files(workdir: Path, args: tuple[str, ...]) -> None:
    """The repository as the working directory, plus the files a command names that the reader brings
    or an earlier README step writes (`--events events.jsonl`, `schemas/acme/DiskRepair.avsc`), empty."""
    for arg in args:
        if re.fullmatch(r"[\w./-]+\.\w+", arg) and not arg.startswith("-") and not (REPO / arg).exists():
            (workdir / arg).parent.mkdir(parents=True, exist_ok=True)
            (workdir / arg).touch()
    for entry in REPO.iterdir():
        if not (workdir / entry.name).exists():
            (workdir / entry.name).symlink_to(entry)


@pytest.mark.parametrize("command", VIGIL, ids=[c.id for c in VIGIL])
def test_vigil_command__parses(command: ReadmeCommand, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Groups dispatch as usual; the command at the end parses its arguments and stops there.
    monkeypatch.setattr(click.Command, "invoke", lambda self, ctx: None)
    readers_files(tmp_path, command.args)
    monkeypatch.chdir(tmp_path)
    try:
        cli.main(args=hoist_global_options(list(command.args)), prog_name="vigil", standalone_mode=False)
    except click.ClickException as exc:
        pytest.fail(f"README.md line {command.line}: `{command.text}`: {exc.format_message()}")


@pytest.mark.parametrize("script", sorted({c.program for c in BENCHMARKS}))
def test_benchmark__accepts_every_flag_the_readme_shows(script: str) -> None:
    shown = {(c.line, arg) for c in BENCHMARKS if c.program == script for arg in c.args if arg.startswith("--")}
    help_text = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=120, check=True).stdout
    accepted = set(re.findall(r"--[\w-]+", help_text))
    missing = sorted(f"README.md line {line}: {flag}" for line, flag in shown if flag.split("=")[0] not in accepted)
    assert missing == [], f"{script} --help does not list:\n" + "\n".join(missing)
