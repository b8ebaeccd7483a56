"""file: content / mode / owner changed, removed, created: pure comparisons, then real edits in a
temp dir seen by the real beacon."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from app.beacons.base import Beacon, Unreadable
from app.beacons.builtin import BuildEnv
from app.beacons.builtin.file import FileInfo, build, compare_files, file_changes, stat_file
from app.beacons.config import FileConfig
from app.model.events import Event, Severity


def info(sha: str = "aa", mode: int = 0o644, uid: int = 0, gid: int = 0) -> FileInfo:
    return FileInfo(sha, mode, uid, gid, 10)


@pytest.mark.parametrize(("before", "now", "expected"), [
    (info(), info(), []),
    (None, None, []),
    (None, info(), ["created"]),
    (info(), None, ["removed"]),
    (info("aa"), info("bb"), ["content"]),
    (info(mode=0o644), info(mode=0o600), ["mode"]),
    (info(uid=0), info(uid=1000), ["owner"]),
    (info(gid=0), info(gid=50), ["owner"]),
    (info("aa", 0o644, 0), info("bb", 0o600, 1), ["content", "mode", "owner"]),
])
def test_file_changes(before: FileInfo | None, now: FileInfo | None, expected: list[str]) -> None:
    assert file_changes(before, now) == expected


def test_compare__baseline_then_one_event_per_change(make_ctx) -> None:
    p = Path("/etc/motd")
    events, state = compare_files(make_ctx("file"), None, {p: info()}, managed={p: True})
    assert [(e.name, e.severity, e.tags["change"]) for e in events] == [("file:/etc/motd", 0, "baseline")]

    events, state = compare_files(make_ctx("file"), state, {p: info("bb", 0o600)}, managed={p: True})
    assert [(e.tags["change"], e.severity) for e in events] == [("content", 1), ("mode", 1)]
    content = events[0]
    assert content.tags["path"] == "/etc/motd" and content.tags["sha256"] == "bb"  # what a restoring rule needs
    assert content.extended["previous"]["sha256"] == "aa" and content.extended["current"]["mode"] == "0600"

    events, _ = compare_files(make_ctx("file"), state, {p: info("bb", 0o600)}, managed={p: True})
    assert events == []


def test_compare__unmanaged_changes_are_ok_and_a_missing_managed_file_warns(make_ctx) -> None:
    a, b = Path("/tmp/a"), Path("/tmp/b")
    events, state = compare_files(make_ctx("file"), None, {a: info(), b: None}, managed={a: False, b: True})
    assert [(e.name, e.severity, e.tags["state"]) for e in events] == [("file:/tmp/a", 0, "present"),
                                                                        ("file:/tmp/b", 1, "missing")]
    events, _ = compare_files(make_ctx("file"), state, {a: info("cc"), b: None}, managed={a: False, b: True})
    assert [(e.tags["change"], e.severity) for e in events] == [("content", 0)]


def test_compare__unreadable_is_a_problem_and_keeps_the_last_good_read(make_ctx) -> None:
    p = Path("/root/secret")
    _, state = compare_files(make_ctx("file"), None, {p: info()}, managed={})
    ctx = make_ctx("file")
    events, state = compare_files(ctx, state, {p: Unreadable("PermissionError: denied")}, managed={})
    assert events == [] and ctx.problems == ["file:/root/secret: PermissionError: denied"]
    events, _ = compare_files(make_ctx("file"), state, {p: info("zz")}, managed={})
    assert [e.tags["change"] for e in events] == ["content"]  # compared with the last good read


# -- the real beacon on a temp dir --------------------------------------------------------------------
@pytest.fixture
def watched(tmp_path: Path) -> tuple[Path, Beacon]:
    path = tmp_path / "managed" / "motd"
    path.parent.mkdir()
    path.write_text("welcome\n")
    path.chmod(0o644)
    (beacon,) = build(FileConfig(paths=[str(path)]), BuildEnv(systemctl=None))
    return path, beacon


class Watch:
    """Runs a beacon like the runner does, keeping its state between runs."""

    def __init__(self, beacon: Beacon, make_ctx) -> None:
        self.beacon, self.make_ctx, self.state = beacon, make_ctx, None

    def run(self) -> list[Event]:
        ctx = self.make_ctx(self.beacon.name)
        events, self.state = self.beacon.check(ctx, self.state)
        self.problems = ctx.problems
        return events


def changes(events: list[Event]) -> list[str]:
    return [e.tags["change"] for e in events]


def test_real_file__edit_chmod_remove_create(watched: tuple[Path, Beacon], make_ctx) -> None:
    path, beacon = watched
    watch = Watch(beacon, make_ctx)
    assert changes(watch.run()) == ["baseline"]
    assert watch.run() == []

    path.write_text("edited by hand\n")
    (edited,) = watch.run()
    assert edited.tags["change"] == "content" and edited.severity == Severity.WARNING
    assert edited.tags["sha256"] == hashlib.sha256(b"edited by hand\n").hexdigest()
    assert edited.tags["path"] == str(path) and edited.name == f"file:{path}"

    path.chmod(0o600)
    (chmodded,) = watch.run()
    assert (chmodded.tags["change"], chmodded.tags["mode"]) == ("mode", "0600")

    path.unlink()
    (removed,) = watch.run()
    assert (removed.tags["change"], removed.tags["state"], removed.tags.get("sha256")) == ("removed", "missing", None)

    path.write_text("welcome\n")
    (created,) = watch.run()
    assert created.tags["change"] == "created" and created.tags["sha256"] == hashlib.sha256(b"welcome\n").hexdigest()


def test_real_file__same_content_rewritten_is_not_a_change(watched: tuple[Path, Beacon], make_ctx) -> None:
    path, beacon = watched
    watch = Watch(beacon, make_ctx)
    watch.run()
    path.write_text("welcome\n")  # rewritten, same bytes: stamp moves, hash does not
    assert watch.run() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_real_file__unreadable_dir_is_a_problem_not_a_removal(tmp_path: Path, make_ctx) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "conf").write_text("x")
    (beacon,) = build(FileConfig(paths=[str(locked / "conf")]), BuildEnv(systemctl=None))
    watch = Watch(beacon, make_ctx)
    watch.run()
    locked.chmod(0)
    try:
        assert watch.run() == [] and "PermissionError" in watch.problems[0]
    finally:
        locked.chmod(0o755)


def test_real_file__owner_change_seen_through_stat(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    first = stat_file(path)
    assert isinstance(first, FileInfo) and first.uid == os.getuid()
    again = stat_file(path, first)
    assert again == first  # unchanged stamp: hash reused
    assert stat_file(tmp_path / "nope") is None
    assert stat_file(tmp_path).sha256 is None  # a directory: mode and owner only


def test_real_file__a_path_that_cannot_be_looked_up_is_a_problem(tmp_path: Path, make_ctx) -> None:
    bad = tmp_path / ("x" * 300)  # ENAMETOOLONG: fails for root too
    (beacon,) = build(FileConfig(paths=[str(bad)]), BuildEnv(systemctl=None))
    watch = Watch(beacon, make_ctx)
    assert watch.run() == []
    assert "File name too long" in watch.problems[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file away")
def test_real_file__chown(watched: tuple[Path, Beacon], make_ctx) -> None:
    path, beacon = watched
    watch = Watch(beacon, make_ctx)
    watch.run()
    os.chown(path, 4321, 4322)
    (owned,) = watch.run()
    assert (owned.tags["change"], owned.tags["uid"], owned.tags["gid"]) == ("owner", "4321", "4322")
