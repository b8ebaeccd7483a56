"""A directory of rule files -> one RuleSet, with hot reload that never loses working rules.

Files are `*.yaml` / `*.yml` anywhere under the directory (hidden files and folders skipped: editors
keep swap files there), read in path order. A file is all-or-nothing: if it has any error, none of
its new content is used, and the last version of it that loaded cleanly stays active while its
errors are reported. Rule names are unique across files; on a clash the rule already active (or,
on a first load, the one in the earlier file) keeps the name and the newcomer's file counts as
broken.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from app.lookups.data import DATA_DIR
from app.lookups.hierarchy import HIERARCHY_FILE
from app.lookups.loader import LookupLoader
from app.routing.loader import ROUTES_FOLDER
from app.rules.files import FileWatch, definition_files
from app.rules.source import RuleError
from app.rules.spec import Rule, compile_rules_text

__all__ = ["FixedRules", "ReloadResult", "RuleSet", "RuleSetLoader", "check_rules", "load_rules", "rule_files"]

log = logging.getLogger(__name__)

RULE_FILE_SUFFIXES: Final = (".yaml", ".yml")
#: Top-level entries of a rules directory that are not rule files: the lookup hierarchy and its data
#: (app.lookups), the routes (app.routing).
NOT_RULE_FILES: Final = frozenset({HIERARCHY_FILE, DATA_DIR, ROUTES_FOLDER})


@dataclass(frozen=True)
class RuleSet:
    """The active rules, in file order then position (the order firings are produced in)."""

    rules: tuple[Rule, ...] = ()
    _by_name: dict[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {rule.name: rule for rule in self.rules})

    def get(self, name: str) -> Rule | None:
        """The rule called `name`, or None."""
        return self._by_name.get(name)

    @property
    def enabled(self) -> tuple[Rule, ...]:
        """Rules with `enabled: true` (the default): the ones an engine evaluates."""
        return tuple(rule for rule in self.rules if rule.enabled)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True)
class ReloadResult:
    """Outcome of a (re)load: the active rules, every current error, and whether anything changed."""

    ruleset: RuleSet
    errors: list[RuleError]
    changed: bool
    changed_files: tuple[str, ...] = ()


@dataclass
class _File:
    latest: tuple[Rule, ...] | None  # the current content, None when it has errors
    errors: list[RuleError]
    good: tuple[Rule, ...] | None = None  # last content that loaded cleanly and was accepted
    active: tuple[Rule, ...] = ()  # what is in the RuleSet now
    active_source: tuple[Rule, ...] | None = None  # the version `active` came from


def rule_files(directory: Path) -> list[Path]:
    """Rule files under `directory`, sorted, skipping hidden files and folders and what holds other
    definitions (NOT_RULE_FILES); folders reached through a symlink are read too (app.rules.files)."""
    return definition_files(directory, RULE_FILE_SUFFIXES, skip_top=NOT_RULE_FILES)


def _compile_file(data: bytes, name: str, lookups: LookupLoader) -> tuple[tuple[Rule, ...] | None, list[RuleError]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [RuleError(name, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save as UTF-8")]
    rules, errors = compile_rules_text(text, name, lookups=lookups.source)
    return (None if errors else tuple(rules)), errors


class RuleSetLoader:
    """Loads a rules directory and reloads only files whose mtime/size and content hash changed.

    The directory's lookup hierarchy and data (app.lookups) load with it, in `lookups`: its rules
    read that data, and a reload picks up its changes too (errors in it are among `errors`)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.lookups = LookupLoader(self.directory)
        self._files: dict[str, _File] = {}
        self._watch = FileWatch()
        self._ruleset = RuleSet()
        self._errors: list[RuleError] = []

    @property
    def ruleset(self) -> RuleSet:
        """The active rules (last good version of every file)."""
        return self._ruleset

    @property
    def errors(self) -> list[RuleError]:
        """Every problem in the files as they are on disk now (rule files, hierarchy and data)."""
        return sorted([*self._errors, *self.lookups.errors])

    def reload(self) -> ReloadResult:
        """Pick up added, changed and deleted files; broken files keep their last good version."""
        if not self.directory.is_dir():
            error = RuleError(str(self.directory), 0, "not a directory of rule files (create it or pass "
                                                      "the right path)")
            self._errors = [error]
            return ReloadResult(self._ruleset, [error], changed=False)
        self.lookups.reload()
        known_before = set(self._files)
        updated, gone = self._watch.scan(rule_files(self.directory))
        changed: list[str] = []
        for file in updated:
            entry = self._files.get(file.name)
            latest, errors = _compile_file(file.data, file.name, self.lookups)
            self._files[file.name] = _File(latest, errors, entry.good if entry else None, entry.active if entry else (),
                                           entry.active_source if entry else None)
            changed.append(file.name)
        for name in gone:
            self._files.pop(name, None)
            changed.append(name)
        if changed or not self._files:
            self._assemble()
        for name in changed:
            broken = [e for e in self._errors if e.file == name]
            if broken and name in known_before:  # first loads: the caller reports the errors
                kept = "keeping its last good version" if self._files[name].good else "none of its rules active"
                log.warning("rule file %s has %d error(s); %s", name, len(broken), kept)
        return ReloadResult(self._ruleset, self.errors, bool(changed), tuple(changed))

    def _assemble(self) -> None:
        claimed: dict[str, str] = {}  # rule name -> "file:line" that owns it
        errors: list[RuleError] = []
        # Incumbents (files whose active version is still what they want) keep their names first.
        wanted = {name: (f.latest if f.latest is not None else f.good) for name, f in self._files.items()}
        order = sorted(self._files, key=lambda n: (wanted[n] is not self._files[n].active_source, n))
        for name in order:
            entry = self._files[name]
            errors.extend(entry.errors)
            want = wanted[name] or ()  # () when a file never loaded cleanly
            clashes = [rule for rule in want if rule.name in claimed]
            if clashes and want is entry.latest and entry.good is not None and entry.good is not want:
                errors.extend(self._clash_errors(clashes, claimed, name))
                want = entry.good  # the new content is broken by the clash: keep the last good one
                clashes = [rule for rule in want if rule.name in claimed]
            elif clashes:
                errors.extend(self._clash_errors(clashes, claimed, name))
            elif want is entry.latest and entry.latest is not None:
                entry.good = entry.latest
            entry.active = tuple(rule for rule in want if rule.name not in claimed)
            entry.active_source = want
            for rule in entry.active:
                claimed[rule.name] = rule.location
        self._errors = sorted(errors)
        self._ruleset = RuleSet(tuple(rule for name in sorted(self._files) for rule in self._files[name].active))

    @staticmethod
    def _clash_errors(clashes: list[Rule], claimed: dict[str, str], name: str) -> list[RuleError]:
        return [RuleError(name, rule.line, f"duplicate rule name `{rule.name}`: already defined at "
                                           f"{claimed[rule.name]}; rule names must be unique across files")
                for rule in clashes]


class FixedRules:
    """A RuleSetLoader's stand-in for rules given in memory (a backtest's share of a rule set):
    reads no directory, and every reload returns the same rules."""

    def __init__(self, ruleset: RuleSet) -> None:
        self._result = ReloadResult(ruleset, [], changed=False)

    @property
    def ruleset(self) -> RuleSet:
        """The rules."""
        return self._result.ruleset

    @property
    def errors(self) -> list[RuleError]:
        """None: the rules were checked where they were loaded."""
        return []

    def reload(self) -> ReloadResult:
        """The same rules, unchanged."""
        return self._result


def load_rules(directory: Path | str) -> tuple[RuleSet, list[RuleError]]:
    """Load a rules directory once: the rules of every clean file, and every error."""
    result = RuleSetLoader(directory).reload()
    return result.ruleset, result.errors


def check_rules(directory: Path | str) -> list[RuleError]:
    """Every error in a rules directory (empty when all files are valid)."""
    return load_rules(directory)[1]
