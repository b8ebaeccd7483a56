"""`file`: watched paths: content (sha256), mode and owner changed, removed or created.

The basis of "someone edited a managed file": every change event carries the path and the new
hash (tags `path`, `change`, `sha256`), so a rule can put the managed content back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.beacons.base import Beacon, BeaconContext, Unreadable, describe_error
from app.beacons.config import FileConfig
from app.model.events import Event, Kind, Severity

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["CHANGES", "FileInfo", "build", "compare_files", "file_changes", "observe_files", "stat_file"]

#: The change kinds, in the order they are reported when several happen at once.
CHANGES = ("created", "removed", "content", "mode", "owner")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileInfo:
    """What is compared: content hash (regular files only), permission bits and owner.

    `stamp` (device, inode, size, mtime, ctime) says whether the file may have changed at all: any
    write, chmod or chown moves ctime, so an unchanged stamp lets us skip re-reading the content.
    """

    sha256: str | None
    mode: int
    uid: int
    gid: int
    size: int
    stamp: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The fields a person (or a restoring rule) needs, for `extended`."""
        return {"sha256": self.sha256, "mode": f"{self.mode:04o}", "uid": self.uid, "gid": self.gid,
                "size": self.size}


FileSeen = FileInfo | None | Unreadable  # None: the path does not exist


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stat_file(path: Path, previous: FileSeen = None) -> FileSeen:
    """Read one path; reuse the previous hash when its stamp has not moved."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return Unreadable(describe_error(exc))
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = None
    if stat.S_ISREG(st.st_mode):
        if isinstance(previous, FileInfo) and previous.stamp == stamp:
            digest = previous.sha256
        else:
            try:
                digest = _sha256(path)
            except OSError as exc:
                return Unreadable(describe_error(exc))
    return FileInfo(digest, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, stamp)


def observe_files(paths: Sequence[Path], previous: Mapping[Path, FileSeen] | None) -> dict[Path, FileSeen]:
    """Every watched path, read (content only when its stamp moved)."""
    return {p: stat_file(p, previous.get(p) if previous else None) for p in paths}


def file_changes(before: FileInfo | None, now: FileInfo | None) -> list[str]:
    """What changed between two reads of one path (in CHANGES order; empty when nothing did)."""
    if before is None:
        return [] if now is None else ["created"]
    if now is None:
        return ["removed"]
    found = {"content": before.sha256 != now.sha256, "mode": before.mode != now.mode,
             "owner": (before.uid, before.gid) != (now.uid, now.gid)}
    return [c for c in CHANGES if found.get(c)]


def _change_text(path: Path, change: str, before: FileInfo | None, now: FileInfo | None) -> str:
    if change == "created" and now is not None:
        return f"{path} was created (sha256 {(now.sha256 or '-')[:12]}, mode {now.mode:04o})"
    if change == "removed" or before is None or now is None:
        return f"{path} was removed"
    if change == "content":
        return f"{path} content changed (sha256 {(before.sha256 or '-')[:12]} → {(now.sha256 or '-')[:12]})"
    if change == "mode":
        return f"{path} mode changed {before.mode:04o} → {now.mode:04o}"
    return f"{path} owner changed {before.uid}:{before.gid} → {now.uid}:{now.gid}"


def _tags(path: Path, info: FileInfo | None, managed: bool) -> dict[str, str]:
    tags = {"path": str(path), "managed": str(managed).lower()}
    if info is not None:
        tags.update(sha256=info.sha256 or "", mode=f"{info.mode:04o}", uid=str(info.uid), gid=str(info.gid))
    return tags


_UNSEEN: Any = object()


def compare_files(ctx: BeaconContext, previous: Mapping[Path, FileInfo | None] | None,
                  current: Mapping[Path, FileSeen], *,
                  managed: Mapping[Path, bool]) -> tuple[list[Event], dict[Path, FileInfo | None]]:
    """Per path ("file:/etc/motd"): a baseline STATUS on the first look, then one STATUS event per
    change (tag `change` = created|removed|content|mode|owner), WARNING for managed files."""
    events: list[Event] = []
    state: dict[Path, FileInfo | None] = {}
    for path, now in current.items():
        name, is_managed = f"file:{path}", managed.get(path, True)
        before = previous.get(path, _UNSEEN) if previous is not None else _UNSEEN
        if isinstance(now, Unreadable):
            ctx.problem(name, now.error)
            if before is not _UNSEEN:
                state[path] = before
            continue
        state[path] = now
        alarm = Severity.WARNING if is_managed else Severity.OK
        if before is _UNSEEN:
            severity = Severity.OK if now is not None else alarm
            text = (f"watching {path} (sha256 {(now.sha256 or '-')[:12]}, mode {now.mode:04o})" if now is not None
                    else f"{path} does not exist")
            events.append(ctx.event(name, kind=Kind.STATUS, severity=severity, text=text,
                                    tags={**_tags(path, now, is_managed), "change": "baseline",
                                          "state": "present" if now is not None else "missing"},
                                    extended={"path": str(path), "current": now.describe() if now else None}))
            continue
        for change in file_changes(before, now):
            extended = {"path": str(path), "change": change, "previous": before.describe() if before else None,
                        "current": now.describe() if now else None}
            events.append(ctx.event(name, kind=Kind.STATUS, severity=alarm,
                                    text=_change_text(path, change, before, now),
                                    tags={**_tags(path, now, is_managed), "change": change,
                                          "state": "present" if now is not None else "missing"},
                                    extended=extended))
    return events, state


def build(config: FileConfig, env: BuildEnv) -> list[Beacon]:
    """The file beacon (none when no path is configured)."""
    if not config.paths:
        return []
    paths = [spec.path for spec in config.paths]
    managed = {spec.path: config.managed if spec.managed is None else spec.managed for spec in config.paths}

    def check(ctx: BeaconContext, previous: dict[Path, FileInfo | None] | None,
              ) -> tuple[list[Event], dict[Path, FileInfo | None]]:
        # Unlike the other beacons, the read needs the previous state (to skip re-hashing).
        return compare_files(ctx, previous, observe_files(paths, previous), managed=managed)

    return [Beacon("file", config.interval_ms, check, description=__doc__ or "")]
