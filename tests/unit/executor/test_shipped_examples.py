"""The rules the repo ships (rules/) and the example executor.yaml agree: every shell action names an
allowlisted command and fills exactly its declared slots (otherwise `make run` would REJECT it)."""

from __future__ import annotations

import pytest

from app.executor.argv import parse_argv_template
from app.executor.config import load_executor_config
from app.rules.loader import load_rules
from tests.conftest import REPO

RULESET, ERRORS = load_rules(REPO / "rules")
COMMANDS = load_executor_config(REPO / "executor.yaml").commands
SHELL_ACTIONS = [(rule.name, action) for rule in RULESET for action in rule.actions if action.type == "shell"]


def test_shipped_rules__load_without_errors() -> None:
    assert ERRORS == []


@pytest.mark.parametrize(("rule", "action"), SHELL_ACTIONS, ids=[name for name, _ in SHELL_ACTIONS])
def test_shipped_shell_actions__use_allowlisted_commands_and_declared_slots(rule: str, action) -> None:
    command = action.params["command"]
    assert command in COMMANDS, f"rule {rule}: command {command!r} is not in executor.yaml's allowlist"
    slots = parse_argv_template(COMMANDS[command].argv).slots
    assert set(action.params.get("args", {})) == set(slots), f"rule {rule}: args must fill exactly {sorted(slots)}"
