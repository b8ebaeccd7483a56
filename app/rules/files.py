"""The files of a rules directory, found the same way for every kind of definition kept there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChangedFile", "FileWatch", "definition_files"]


def definition_files(directory: Path, suffixes: tuple[str, ...], *, skip_top: Collection[str] = ()) -> list[Path]:
    """Files ending in one of `suffixes` under `directory`, sorted, skipping hidden files and folders
    and the top-level entries named in `skip_top` (they hold definitions of another kind).

    Folders reached through a symlink are read too: a Kubernetes ConfigMap volume shows each entry
    as a symlink into its hidden `..data` folder, so a `gates/` folder there is a symlink. Each real
    folder and file is read once (a symlink loop ends), under the first path the directory shows it at.
    """
    found: dict[str, Path] = {}  # real path -> the first path it was seen at
    seen_folders: set[str] = set()
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:
            subfolders.clear()
            continue
        seen_folders.add(real)
        top = Path(folder) == Path(directory)
        subfolders[:] = sorted(name for name in subfolders
                               if not name.startswith(".") and not (top and name in skip_top))
        for name in sorted(names):
            path = Path(folder, name)
            if name.startswith(".") or (top and name in skip_top):
                continue
            if path.suffix in suffixes and path.is_file():
                found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


@dataclass(frozen=True)
class ChangedFile:
    """A file that is new or whose content changed since the last scan."""

    name: str
    data: bytes
    #: sha256 of `data` (hex)
    digest: str


class FileWatch:
    """Which of a set of definition files changed since the last scan: a file whose modification
    time and size are unchanged is not read again; one that was only touched (same content) is not
    reported. Every loader of a rules directory (rules, lookups, routes, dependencies) scans with one."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int], str]] = {}  # name -> ((mtime_ns, size), digest)

    def scan(self, paths: Iterable[Path]) -> tuple[list[ChangedFile], list[str]]:
        """(files new or changed, with their bytes; names of files gone since the last scan)."""
        changed: list[ChangedFile] = []
        seen: set[str] = set()
        for path in paths:
            name = str(path)
            known = self._known.get(name)
            try:
                stat = path.stat()
                signature = (stat.st_mtime_ns, stat.st_size)
                if known is not None and known[0] == signature:
                    seen.add(name)
                    continue
                data = path.read_bytes()
            except OSError:
                continue  # gone while we looked (or unreadable): reported as gone
            seen.add(name)
            digest = hashlib.sha256(data).hexdigest()
            self._known[name] = (signature, digest)
            if known is None or known[1] != digest:
                changed.append(ChangedFile(name, data, digest))
        gone = sorted(set(self._known) - seen)
        for name in gone:
            del self._known[name]
        return changed, gone
