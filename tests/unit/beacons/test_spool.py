"""The on-disk spool: FIFO order, the bound (oldest dropped, counted), persistence, one owner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.beacons.spool import Spool, SpoolError
from tests.unit.beacons.conftest import ev


def seqs(spool: Spool, limit: int = 1000) -> list[int]:
    return [int(e.metrics["seq"]) for _, e in spool.peek(limit)]


def test_fifo__peek_oldest_first_and_remove_delivered(make_spool) -> None:
    spool = make_spool()
    for i in range(5):
        spool.append(ev(seq=i))
    assert len(spool) == 5 and spool.size_bytes > 0
    batch = spool.peek(2)
    assert [int(e.metrics["seq"]) for _, e in batch] == [0, 1]
    spool.remove(s for s, _ in batch)
    assert seqs(spool) == [2, 3, 4]
    stats = spool.stats()
    assert (stats.spooled, stats.delivered, stats.dropped, stats.pending) == (5, 2, 0, 3)


def test_events_come_back_equal(make_spool) -> None:
    spool = make_spool()
    original = ev(seq=1, tags={"path": "/etc/motd"}, extended={"a": [1, 2]}, ttl=30.0, text="ünïcode")
    spool.append(original)
    assert spool.peek(1)[0][1] == original


def test_bound_by_count__drops_the_oldest_and_counts_them(make_spool) -> None:
    spool = make_spool(max_events=3)
    for i in range(7):
        spool.append(ev(seq=i))
    assert seqs(spool) == [4, 5, 6]
    stats = spool.stats()
    assert (stats.spooled, stats.dropped, stats.pending, stats.max_events) == (7, 4, 3, 3)


def test_bound_by_bytes__drops_the_oldest_until_it_fits(make_spool) -> None:
    size = len(ev(seq=0).model_dump_json().encode())
    spool = make_spool(max_bytes=size * 3 + size // 2)
    for i in range(6):
        spool.append(ev(seq=i))
    assert seqs(spool) == [3, 4, 5]
    assert spool.size_bytes <= spool.max_bytes
    assert spool.stats().dropped == 3


def test_an_event_larger_than_the_bound_is_dropped_alone(make_spool) -> None:
    spool = make_spool(max_bytes=400)
    spool.append(ev(seq=1))
    spool.append(ev(seq=2, text="x" * 1000))
    assert seqs(spool) == [1]
    assert spool.stats().dropped == 1


def test_persists_across_reopen_with_counts(make_spool, tmp_path: Path) -> None:
    spool = make_spool(max_events=2, directory=tmp_path / "s")
    for i in range(3):
        spool.append(ev(seq=i))
    spool.close()
    again = make_spool(max_events=2, directory=tmp_path / "s")
    assert seqs(again) == [1, 2]
    assert (again.stats().spooled, again.stats().dropped) == (3, 1)
    taken = again.take_stats()
    assert (taken.spooled, taken.dropped) == (3, 1)
    assert (again.stats().spooled, again.stats().dropped, again.stats().pending) == (0, 0, 2)  # a new outage


def test_a_second_owner_is_refused(make_spool, tmp_path: Path) -> None:
    make_spool(directory=tmp_path / "shared")
    with pytest.raises(SpoolError, match="in use by another beacon runner"):
        Spool(tmp_path / "shared", max_events=10, max_bytes=10_000)


def test_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot use spool directory"):
        Spool(tmp_path / "file" / "spool", max_events=10, max_bytes=10_000)


def test_an_unreadable_row_is_dropped_and_counted(make_spool, tmp_path: Path) -> None:
    spool = make_spool(directory=tmp_path / "s")
    spool.append(ev(seq=1))
    db = sqlite3.connect(tmp_path / "s" / Spool.FILE_NAME)
    db.execute("INSERT INTO events (size, data) VALUES (2, '{}')")
    db.commit()
    db.close()
    spool.append(ev(seq=3))
    assert seqs(spool) == [1, 3]
    assert spool.stats().dropped == 1


def test_discard_counts_as_dropped(make_spool) -> None:
    spool = make_spool()
    spool.append(ev(seq=1))
    spool.discard([s for s, _ in spool.peek(1)])
    assert (len(spool), spool.stats().dropped, spool.stats().delivered) == (0, 1, 0)
