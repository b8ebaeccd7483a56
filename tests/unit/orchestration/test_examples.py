"""The orchestration examples of the README are the files of tests/data/orchestration/examples,
verbatim, and they are valid; the README's bad-input example fails with the errors it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.orchestration.definitions import check_definitions
from app.rules.loader import load_rules
from tests.conftest import REPO

EXAMPLES = REPO / "tests" / "data" / "orchestration" / "examples"
BAD = REPO / "tests" / "data" / "orchestration" / "bad"
README = (REPO / "README.md").read_text()


def _indented(path: Path) -> str:
    return "\n".join(("    " + line) if line else "" for line in path.read_text().splitlines())


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_readme_example__is_the_file_verbatim(path: Path) -> None:
    assert _indented(path) in README


def test_examples__valid_rules_gates_and_runbooks() -> None:
    ruleset, errors = load_rules(EXAMPLES)
    assert errors == []
    assert {r.trigger.kind for r in ruleset} >= {"schedule", "register", "status"}
    assert check_definitions(EXAMPLES) == []


def test_bad_example__fails_with_the_errors_the_readme_shows() -> None:
    assert _indented(BAD / "broken.yaml") in README
    _, rule_errors = load_rules(BAD)
    errors = sorted([*rule_errors, *check_definitions(BAD)], key=lambda e: e.line)
    shown = re.findall(r"^    rules/broken\.yaml:(\d+): (.*)$", README, flags=re.M)
    assert [(str(e.line), e.message) for e in errors] == shown
