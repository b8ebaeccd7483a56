"""FileWatch: which definition files changed since the last scan (every rules-directory loader's)."""

from __future__ import annotations

import os
from pathlib import Path

from app.rules.files import ChangedFile, FileWatch


def _names(changed: list[ChangedFile]) -> list[str]:
    return [Path(c.name).name for c in changed]


def test_new_changed_touched_and_gone_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("rules: []\n")
    b.write_text("routes: []\n")
    watch = FileWatch()
    changed, gone = watch.scan([a, b])
    assert _names(changed) == ["a.yaml", "b.yaml"] and gone == []
    assert changed[0].data == b"rules: []\n" and len(changed[0].digest) == 64

    assert watch.scan([a, b]) == ([], [])  # nothing moved: not read again

    stat = a.stat()
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched, same content
    assert watch.scan([a, b]) == ([], [])

    b.write_text("routes: [x]\n")
    changed, gone = watch.scan([a, b])
    assert _names(changed) == ["b.yaml"] and changed[0].data == b"routes: [x]\n" and gone == []

    b.unlink()
    assert watch.scan([a, b]) == ([], [str(b)])  # listed but gone while scanning: reported gone
    assert watch.scan([a]) == ([], [])
    b.write_text("routes: [x]\n")
    assert _names(watch.scan([a, b])[0]) == ["b.yaml"]  # back again: new to the watch
