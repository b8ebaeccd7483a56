"""`gates:` and `runbooks:` in the rules directory, beside `rules:` (any file may hold any of the
three; e.g. rules/gates/deploy-web.yaml), loaded with every error as file:line, and reloaded when a
file changes. A file with errors keeps its last good gates and runbooks, as rule files do.

Rule actions that start orchestration are checked here too: `runbook: {name: X}` must name a
runbook, and `roll: {members: ..., action: ...}` must be a valid roll (`vigil rules check`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from app.orchestration.gates import Gate, parse_gate
from app.orchestration.runbooks import Runbook, compile_action, parse_roll, parse_runbook
from app.rules.loader import RuleSet, load_rules, rule_files
from app.rules.source import ErrorSink, LineDict, RuleError, line_of, load_yaml_text
from app.rules.spec import ActionSpec, Rule
from app.rules.templates import CompiledTemplate

__all__ = ["ORCHESTRATION_KEYS", "Definitions", "DefinitionsLoader", "check_definitions", "load_definitions",
           "parse_file"]

log = logging.getLogger(__name__)

ORCHESTRATION_KEYS: Final = ("gates", "runbooks")
#: Rule action types that start orchestration (handled by the orchestrator, checked here).
START_TYPES: Final = ("runbook", "roll")


@dataclass(frozen=True)
class Definitions:
    """Every gate and runbook of a rules directory, the rules they may refer to, and the errors."""

    gates: Mapping[str, Gate] = field(default_factory=dict)
    runbooks: Mapping[str, Runbook] = field(default_factory=dict)
    rules: RuleSet = field(default_factory=RuleSet)
    errors: tuple[RuleError, ...] = ()


def parse_file(text: str, file: str, rules: RuleSet) -> tuple[list[Gate], list[Runbook], list[RuleError]]:
    """The gates and runbooks of one file's text, and every error in them."""
    sink = ErrorSink(file)
    doc = load_yaml_text(text, sink)
    if sink or not isinstance(doc, LineDict):
        return [], [], []  # the rules loader reports what is wrong with the file itself
    gates: list[Gate] = []
    runbooks: list[Runbook] = []
    for key in ORCHESTRATION_KEYS:
        items = doc.get(key)
        if key not in doc or items is None:
            continue
        if not isinstance(items, list):
            sink.add(line_of(doc, key), f"`{key}:` must be a list")
            continue
        for i, raw in enumerate(items):
            line = line_of(items, i, line_of(doc, key))
            if key == "gates":
                gate = parse_gate(raw, sink, line, rules=rules.get)
                if gate is not None:
                    gates.append(gate)
            else:
                runbook = parse_runbook(raw, sink, line, rules=rules.get)
                if runbook is not None:
                    runbooks.append(runbook)
    return gates, runbooks, sink.errors


def _source_tree(node: Any) -> Any:
    """A compiled params tree with its templates back as their source text (for checking shapes)."""
    if isinstance(node, CompiledTemplate):
        return node.source
    if isinstance(node, Mapping):
        out = LineDict({k: _source_tree(v) for k, v in node.items()})
        if isinstance(node, LineDict):
            out.line, out.key_lines = node.line, dict(node.key_lines)
        return out
    if isinstance(node, list):
        return [_source_tree(v) for v in node]
    return node


def check_start_action(rule: Rule, action: ActionSpec, runbooks: Mapping[str, Runbook], sink: ErrorSink) -> None:
    """Problems of one `runbook:` or `roll:` rule action (the runbook exists, the roll is valid)."""
    what = f"rule {rule.name}: action {action.index + 1} ({action.type})"
    params = _source_tree(action.params)
    if not isinstance(params, Mapping):
        return
    line = action.line
    if action.type == "runbook":
        sink.unknown_keys(params, ("name", "params", "members", "concurrency", "splay", "max_failures", "wait_for"),
                          what)
        name = params.get("name")
        if not isinstance(name, str) or "{" in name:
            sink.add(line, f"{what}: `name` must be the fixed name of a runbook")
        elif name not in runbooks:
            known = ", ".join(sorted(runbooks)) or "none are defined"
            sink.add(line, f"{what}: no runbook called {name!r} ({known})")
        if "params" in params and not isinstance(params["params"], Mapping):
            sink.add(line, f"{what}: `params` must be a mapping (the runbook's `params`)")
    else:
        sink.unknown_keys(params, ("members", "action", "concurrency", "splay", "max_failures", "wait_for"), what)
        if "members" not in params:
            sink.add(line, f"{what}: a roll needs `members:` (which hosts), e.g. {{tags: {{role: cassandra}}}}")
        if "action" not in params:
            sink.add(line, f"{what}: a roll needs `action:`, the action run on each member")
        else:
            compile_action(params["action"], sink, line, f"{what}.action")
    parse_roll(params, sink, line, what)


def check_definitions(directory: Path | str, rules: RuleSet | None = None) -> list[RuleError]:
    """Every error in the gates and runbooks of a rules directory, and in its rules' `runbook:` and
    `roll:` actions (what `vigil rules check` adds to the rules' own errors)."""
    return list(load_definitions(directory, rules).errors)


def _start_action_errors(rules: RuleSet, runbooks: Mapping[str, Runbook]) -> list[RuleError]:
    errors: list[RuleError] = []
    for rule in rules:
        for action in rule.actions:
            if action.type in START_TYPES:
                sink = ErrorSink(rule.file)
                check_start_action(rule, action, runbooks, sink)
                errors.extend(sink.errors)
    return errors


def load_definitions(directory: Path | str, rules: RuleSet | None = None) -> Definitions:
    """Load a rules directory's gates and runbooks once (`rules`: its rules, loaded when not given)."""
    return DefinitionsLoader(directory, rules=rules).reload()


@dataclass
class _File:
    gates: list[Gate]
    runbooks: list[Runbook]
    errors: list[RuleError]


class DefinitionsLoader:
    """Loads gates and runbooks, and reloads them when a file changed (checked at most every
    `interval_s`); a file with errors keeps its last good definitions."""

    def __init__(self, directory: Path | str, *, rules: RuleSet | None = None, interval_s: float = 2.0) -> None:
        self.directory = Path(directory)
        self.interval_s = interval_s
        self._fixed_rules = rules
        self._files: dict[str, _File] = {}
        self._signature: dict[str, tuple[int, int]] | None = None
        self._checked = -1e18
        self._current = Definitions()

    def current(self) -> Definitions:
        """The definitions, reloaded first when the last check is older than the interval."""
        if time.monotonic() - self._checked >= self.interval_s:
            self.reload()
        return self._current

    def _scan(self) -> dict[str, tuple[int, int]]:
        signature: dict[str, tuple[int, int]] = {}
        for path in rule_files(self.directory):
            try:
                stat = path.stat()
            except OSError:
                continue
            signature[str(path)] = (stat.st_mtime_ns, stat.st_size)
        return signature

    def reload(self) -> Definitions:
        """Read the directory again if any file was added, changed or removed."""
        self._checked = time.monotonic()
        if not self.directory.is_dir():
            error = RuleError(str(self.directory), 0, "not a directory of rule files")
            self._current, self._signature = Definitions(errors=(error,)), None
            return self._current
        signature = self._scan()
        if signature == self._signature:
            return self._current
        self._signature = signature
        rules = load_rules(self.directory)[0] if self._fixed_rules is None else self._fixed_rules
        for name in set(self._files) - set(signature):
            del self._files[name]
        for name in signature:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # gone or unreadable: the rules loader reports it
            gates, runbooks, errors = parse_file(text, name, rules)
            known = self._files.get(name)
            if errors and known is not None:
                gates, runbooks = known.gates, known.runbooks  # keep the last good version
                log.warning("orchestration: %s has %d error(s); keeping its last good gates and runbooks",
                            name, len(errors))
            self._files[name] = _File(gates, runbooks, errors)
        self._current = self._assemble(rules)
        return self._current

    def _assemble(self, rules: RuleSet) -> Definitions:
        gates: dict[str, Gate] = {}
        runbooks: dict[str, Runbook] = {}
        errors: list[RuleError] = []
        for name in sorted(self._files):
            entry = self._files[name]
            errors.extend(entry.errors)
            for gate in entry.gates:
                if gate.name in gates:
                    errors.append(RuleError(name, gate.line, f"duplicate gate name `{gate.name}`: already "
                                                             f"defined at {gates[gate.name].location}"))
                else:
                    gates[gate.name] = gate
            for runbook in entry.runbooks:
                if runbook.name in runbooks:
                    first = runbooks[runbook.name].location
                    errors.append(RuleError(name, runbook.line, f"duplicate runbook name `{runbook.name}`: "
                                                                f"already defined at {first}"))
                else:
                    runbooks[runbook.name] = runbook
        errors.extend(_start_action_errors(rules, runbooks))
        return Definitions(gates, runbooks, rules, tuple(sorted(errors)))
