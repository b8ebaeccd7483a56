"""`<rules_dir>/routes/*.yaml` -> one RouteSet, hot reloaded without ever losing working routes.

Files are found as rule files are (app.rules.files: `*.yaml`/`*.yml`, hidden ones skipped, path
order). A file is all-or-nothing: if it has any error, its last version
that loaded cleanly stays active while its errors are reported (logged with file:line, counted).
Route names are unique across files; a later file's route with a taken name is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from app.routing.spec import Route, compile_routes_text
from app.rules.files import FileWatch, definition_files
from app.rules.source import RuleError

__all__ = ["ROUTES_FOLDER", "RouteSet", "RouteSetLoader", "check_routes", "load_routes", "routes_dir"]

log = logging.getLogger(__name__)

#: The folder of the rules directory that holds route files (the rules loader skips it).
ROUTES_FOLDER: Final = "routes"
ROUTE_FILE_SUFFIXES: Final = (".yaml", ".yml")


def routes_dir(rules_dir: Path | str) -> Path:
    """Where the route files of a rules directory are."""
    return Path(rules_dir) / ROUTES_FOLDER


@dataclass(frozen=True)
class RouteSet:
    """The active routes (enabled or not), in file order then position, and the current errors."""

    routes: tuple[Route, ...] = ()
    errors: tuple[RuleError, ...] = ()
    #: increases with every change (the stage rebuilds its router when it moves)
    version: int = 0

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


@dataclass
class _File:
    errors: list[RuleError]
    good: tuple[Route, ...] | None  # the last version that loaded cleanly (kept while it is broken)


@dataclass
class RouteSetLoader:
    """Loads a routes folder; `current()` reloads changed files at most every `interval_s`.
    A missing folder is no error: no routes."""

    directory: Path
    interval_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _files: dict[str, _File] = field(default_factory=dict)
    _watch: FileWatch = field(default_factory=FileWatch)
    _current: RouteSet = field(default_factory=RouteSet)
    _checked: float | None = None

    def current(self) -> RouteSet:
        """The routes, reloaded first when the last check is older than the interval."""
        now = self.clock()
        if self._checked is None or now - self._checked >= self.interval_s:
            self._checked = now
            self.reload()
        return self._current

    def reload(self) -> RouteSet:
        """Pick up added, changed and deleted files now; broken files keep their last good version."""
        paths = definition_files(self.directory, ROUTE_FILE_SUFFIXES) if self.directory.is_dir() else []
        updated, gone = self._watch.scan(paths)
        for file in updated:
            entry = self._files.get(file.name)
            routes, errors = self._compile(file.data, file.name)
            good = entry.good if entry is not None else None
            if errors and good is not None:
                log.warning("routes file %s has %d error(s) (first: %s); keeping its last good version",
                            file.name, len(errors), errors[0])
            self._files[file.name] = _File(errors, good if errors else tuple(routes))
        for name in gone:
            self._files.pop(name, None)
        changed = bool(updated or gone)
        if changed or self._current.version == 0:
            self._current = self._assemble(self._current.version + 1)
        return self._current

    @staticmethod
    def _compile(data: bytes, name: str) -> tuple[list[Route], list[RuleError]]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [], [RuleError(name, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save as UTF-8")]
        return compile_routes_text(text, name)

    def _assemble(self, version: int) -> RouteSet:
        errors: list[RuleError] = []
        routes: list[Route] = []
        owner: dict[str, Route] = {}
        for name in sorted(self._files):
            entry = self._files[name]
            errors.extend(entry.errors)
            for route in entry.good or ():
                first = owner.get(route.name)
                if first is not None:
                    errors.append(RuleError(name, route.line, f"duplicate route name `{route.name}`: already "
                                                              f"defined at {first.location}"))
                    continue
                owner[route.name] = route
                routes.append(route)
        return RouteSet(tuple(routes), tuple(sorted(errors)), version)


def load_routes(rules_dir: Path | str) -> RouteSet:
    """The routes of a rules directory, loaded once (errors in `.errors`)."""
    return RouteSetLoader(routes_dir(rules_dir)).reload()


def check_routes(rules_dir: Path | str) -> list[RuleError]:
    """Every error in the route files of a rules directory (empty when all are valid or there are none)."""
    return list(load_routes(rules_dir).errors)
