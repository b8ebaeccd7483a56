"""CLI input checks that happen before any Kafka I/O."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from app.actions.cli import actions_command, silence_group, trace_command
from app.cli import CliContext


@pytest.mark.parametrize(("command", "args", "message"), [
    (silence_group, ["add", "--match", "subject", "--for", "1h", "--reason", "x"], "expected FIELD=GLOB"),
    (silence_group, ["add", "--match", "host=web1", "--for", "1h", "--reason", "x"], "unknown field `host`"),
    (silence_group, ["add", "--for", "1h", "--reason", "x"], "needs --match"),
    (silence_group, ["add", "--match", "subject=web1", "--for", "soon", "--reason", "x"], "not a duration"),
    (actions_command, ["--since", "yesterday"], "not a duration"),
    (trace_command, ["abc", "--since", "-1h"], "not a duration"),
])
def test_bad_input__clear_error_before_touching_kafka(command: click.Command, args: list[str], message: str) -> None:
    result = CliRunner().invoke(command, args, obj=CliContext())
    assert result.exit_code != 0
    assert message in result.output
