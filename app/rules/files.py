"""The files of a rules directory, found the same way for every kind of definition kept there."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

__all__ = ["definition_files"]


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
