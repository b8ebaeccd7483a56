"""The hierarchy and data files of a rules directory -> the LookupData rules read, with hot reload.

Like rule files, each file is all-or-nothing: a broken `hierarchy.yaml` or data file is reported
(file:line) and its last version that loaded cleanly stays in use. A directory without
`hierarchy.yaml` and `data/` has no lookup data: every lookup finds nothing.

Rules hold the LookupSource of the loader that compiled them, and read `source.data` when they
evaluate; a reload that changes anything puts a new LookupData there (with an empty cache).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.lookups.data import DATA_DIR, DATA_SUFFIXES, DataFile, parse_data_text
from app.lookups.hierarchy import HIERARCHY_FILE, Hierarchy, parse_hierarchy_text
from app.lookups.resolve import LookupData
from app.rules.files import FileWatch, definition_files
from app.rules.source import RuleError

__all__ = ["LookupLoader", "LookupSource", "load_lookups"]

log = logging.getLogger(__name__)


class LookupSource:
    """What compiled rules read lookups from: the current LookupData (replaced whole on reload), and
    where a threshold whose lookup found nothing is counted (`on_miss`, set by the rules stage) and
    logged, once per key and data version."""

    def __init__(self, data: LookupData | None = None) -> None:
        self.data = data if data is not None else LookupData()
        #: called with the key each time a threshold's lookup finds nothing
        self.on_miss: Callable[[str], None] | None = None
        self._logged: set[str] = set()

    def replace(self, data: LookupData) -> None:
        """Use `data` from now on (and log misses afresh: the data changed)."""
        self.data = data
        self._logged.clear()

    def missed(self, key: str, paths: tuple[str, ...]) -> None:
        """A threshold's lookup of `key` found nothing at `paths`: count it, log it the first time."""
        if self.on_miss is not None:
            self.on_miss(key)
        if key not in self._logged:
            self._logged.add(key)
            where = ", ".join(paths) or "no level (the event has none of the fields the levels need)"
            log.warning("lookup: no value for `%s` at %s; conditions using it do not hold (logged once per key; "
                        "counted in vigil_rules_lookup_misses)", key, where)


@dataclass
class _File:
    errors: list[RuleError]
    good: Any = None  # the last content that parsed cleanly (Hierarchy or DataFile)
    good_digest: str = ""


def _data_path(data_dir: Path, path: Path) -> str:
    return path.relative_to(data_dir).with_suffix("").as_posix()


class LookupLoader:
    """Loads `hierarchy.yaml` and `data/**` of a rules directory; reloads only files that changed."""

    def __init__(self, directory: Path | str, source: LookupSource | None = None) -> None:
        self.directory = Path(directory)
        self.source = source if source is not None else LookupSource()
        self._files: dict[str, _File] = {}
        self._watch = FileWatch()
        self._errors: list[RuleError] = []

    @property
    def errors(self) -> list[RuleError]:
        """Every problem in the hierarchy and data files as they are on disk now."""
        return list(self._errors)

    @property
    def data(self) -> LookupData:
        """The lookup data in use."""
        return self.source.data

    def reload(self) -> bool:
        """Pick up added, changed and deleted files; True when the data in use changed."""
        hierarchy_path = self.directory / HIERARCHY_FILE
        data_dir = self.directory / DATA_DIR
        paths = ([hierarchy_path] if hierarchy_path.is_file() else []) + \
            (definition_files(data_dir, DATA_SUFFIXES) if data_dir.is_dir() else [])
        updated, gone = self._watch.scan(paths)
        for file in updated:
            entry = self._files.get(file.name)
            parsed, errors = self._parse(Path(file.name), file.data, data_dir)
            good = parsed if parsed is not None else (entry.good if entry else None)
            good_digest = file.digest if parsed is not None else (entry.good_digest if entry else "")
            self._files[file.name] = _File(errors, good, good_digest)
            if errors and entry is not None:
                log.warning("lookup file %s has %d error(s); %s", file.name, len(errors),
                            "keeping its last good version" if good is not None else "not used")
        for name in gone:
            self._files.pop(name, None)
        changed = bool(updated or gone)
        if not changed:
            return False
        before = self.source.data
        self._assemble(str(hierarchy_path), data_dir)
        return self.source.data is not before

    def _parse(self, path: Path, raw: bytes, data_dir: Path) -> tuple[Any, list[RuleError]]:
        name = str(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, [RuleError(name, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save as UTF-8")]
        if path.parent == self.directory and path.name == HIERARCHY_FILE:
            return parse_hierarchy_text(text, name)
        return parse_data_text(text, name, _data_path(data_dir, path))

    def _assemble(self, hierarchy_name: str, data_dir: Path) -> None:
        errors = [e for f in self._files.values() for e in f.errors]
        hierarchy_entry = self._files.get(hierarchy_name)
        hierarchy = hierarchy_entry.good if hierarchy_entry is not None else None
        files: dict[str, DataFile] = {}
        for name in sorted(self._files):
            good = self._files[name].good
            if not isinstance(good, DataFile):
                continue
            if good.path in files:
                errors.append(RuleError(name, 1, f"data for level path `{good.path}` is also in "
                                                 f"{files[good.path].file}; keep one file per level path"))
                continue
            files[good.path] = good
        if files and hierarchy_entry is None:
            errors.append(RuleError(str(data_dir), 0, f"{len(files)} data file(s) but no {HIERARCHY_FILE} in "
                                                      f"{self.directory} saying which levels an event looks at "
                                                      "(e.g. levels: [host/{{ subject }}, common])"))
        digest = hashlib.sha256("\n".join(f"{name}={f.good_digest}" for name, f in sorted(self._files.items())
                                          if f.good is not None).encode()).hexdigest() if self._files else ""
        self._errors = sorted(errors)
        if digest != self.source.data.digest:
            self.source.replace(LookupData(hierarchy if isinstance(hierarchy, Hierarchy) else Hierarchy(),
                                           files, digest))
            if self._files:
                log.info("lookups: %d level(s), %d data file(s) from %s",
                         len(self.source.data.hierarchy.levels), len(files), self.directory)


def load_lookups(directory: Path | str) -> tuple[LookupData, list[RuleError]]:
    """Load a rules directory's lookup data once: the data, and every error."""
    loader = LookupLoader(directory)
    loader.reload()
    return loader.data, loader.errors
