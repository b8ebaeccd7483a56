"""The ordered-key codec (app.runtime.keys) and every key layout built with it: the bytes are pinned
to what earlier versions wrote (golden values, and the previous versions' formulas as reference), so
state stored before restores; packed keys round-trip and sort as their (parts, time)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.pipeline.agents import build_pipeline
from app.pipeline.archive import ArchiveIndex
from app.pipeline.buckets import BucketedTable
from app.pipeline.config import PipelineConfig
from app.pipeline.tracker import CLOSE_TIMER_PREFIX, _closed_key
from app.runtime.agent import AgentRegistry, agent
from app.runtime.keys import (
    IDENTITY_SEP,
    SEP,
    identity_part,
    pack,
    pack_int,
    pack_time,
    prefix,
    unpack,
    unpack_int,
    unpack_time,
)
from app.runtime.testing import AgentHarness
from app.runtime.windowed import WindowedTable
from app.runtime.windows import Window, pack_window_key, unpack_window_key, window_prefix

#: 2026-01-01T00:00:00Z
NOW_MS = 1_767_225_600_000
MIN_TIME, MAX_TIME = -(1 << 62), (1 << 62) - 1

times = st.integers(MIN_TIME, MAX_TIME)
#: any text (the first part of a key may hold anything, the separators included)
any_text = st.text(st.characters(codec="utf-8"), max_size=12)
#: text without the separator (the parts after the first)
no_sep = st.text(st.characters(codec="utf-8", exclude_characters=SEP), max_size=12)
#: text above the separators: parts whose keys sort as the parts do
sortable = st.text(st.characters(codec="utf-8", min_codepoint=0x20), max_size=6)


# -- the previous versions' formulas, verbatim: what is on disk and in changelogs today -----------------
def old_window_key(key: str, start_ms: int) -> str:
    return f"{key}\x1f{start_ms + (1 << 62):016x}"


def old_closed_key(subject: str, name: str, size_ms: int, start_ms: int) -> str:
    return f"{subject}\x1e{name}\x1f{size_ms:08x}\x1f{start_ms + (1 << 62):016x}"


def old_page_rest(subject: str, name: str, newest_ms: int, newest_id: str) -> str:
    return f"{subject}\x1e{name}\x1f{newest_ms + (1 << 62):016x}\x1f{newest_id}"


def old_bucket_key(bucket: int, rest: str) -> str:
    return f"{bucket + (1 << 28):08x}\x1f{rest}"


# -- golden values ------------------------------------------------------------------------------------
def test_primitives__golden_values() -> None:
    assert (SEP, IDENTITY_SEP) == ("\x1f", "\x1e")
    assert pack_time(0) == "4000000000000000"
    assert pack_time(60_000) == "400000000000ea60"
    assert pack_time(-1) == "3fffffffffffffff"
    assert pack_time(NOW_MS) == "4000019b76daa800"
    assert (pack_time(MIN_TIME), pack_time(MAX_TIME)) == ("0000000000000000", "7fffffffffffffff")
    assert pack_int(60_000) == "0000ea60"
    assert pack_int(-1, offset=1 << 28) == "0fffffff"
    assert pack_int(5, digits=2) == "05"
    assert identity_part("web1", "load") == "web1\x1eload"
    assert pack("a", "b", "c") == "a\x1fb\x1fc" and pack("a") == "a" and pack() == ""
    assert prefix("a", "b") == "a\x1fb\x1f" and prefix() == ""
    assert unpack("a\x1fb\x1fc", 3) == ["a", "b", "c"]
    assert unpack("a\x1fb\x1fc", 2) == ["a\x1fb", "c"]  # from the right: the first part keeps separators


def test_layouts__golden_values() -> None:
    """The keys of every table layout, byte for byte as earlier versions wrote them."""
    assert pack_window_key("web1/load", 60_000) == "web1/load\x1f400000000000ea60"
    assert pack_window_key("a\x1fb", NOW_MS) == "a\x1fb\x1f4000019b76daa800"
    assert unpack_window_key("a\x1fb\x1f4000019b76daa800") == ("a\x1fb", NOW_MS)
    assert window_prefix("web1/load") == "web1/load\x1f"
    assert _closed_key("web1", "load", 60_000, NOW_MS) == "web1\x1eload\x1f0000ea60\x1f4000019b76daa800"
    assert CLOSE_TIMER_PREFIX == "\x1fclose\x1f"
    hour = NOW_MS // 3_600_000
    assert BucketedTable.prefix(hour) == "10077d90\x1f" and BucketedTable.prefix(-1) == "0fffffff\x1f"
    assert BucketedTable.key(hour, "rest") == "10077d90\x1frest"


def test_pipeline_tables__store_exactly_the_golden_bytes() -> None:
    """End to end: the archive's pages and the retained closed windows reach the backend as before."""
    pipeline = build_pipeline(PipelineConfig.model_validate({"window_sizes": ["10s"], "grace": "0s",
                                                             "window_retention": "1h"}))
    h = AgentHarness([pipeline.agent], partitions=1, wall_clock_ms=NOW_MS)
    events = [{"id": f"e{i}", "time": NOW_MS + i * 1000, "subject": "web1", "name": "load", "kind": "METRIC",
               "severity": 0, "origin": "test", "text": "", "tags": {}, "metrics": {"x": 1.0}, "ttl": None,
               "extended": None, "trace_id": None} for i in range(17)]  # the 17th: a full page, window closed
    h.feed_many("events", events)
    h.commit()
    pages = [k for k, _ in h.table("event-find").partition(0).backend.iterate()]
    closed = [k for k, _ in h.table("metric-windows").partition(0).backend.iterate()]
    newest = NOW_MS + 15_000
    assert pages == [b"10077d90\x1fweb1\x1eload\x1f4000019b76dae298\x1fe15"]
    assert pages == [old_bucket_key(newest // 3_600_000, old_page_rest("web1", "load", newest, "e15")).encode()]
    assert closed == [b"10077d90\x1fweb1\x1eload\x1f00002710\x1f4000019b76daa800"]


def test_windowed_table__reads_windows_stored_by_the_previous_version() -> None:
    sums = WindowedTable("sums", size=60_000, default=0)
    reg = AgentRegistry()

    @agent("events", tables=[sums], registry=reg)
    def add(event: Any, ctx: Any) -> None:
        sums.apply(ctx.key, lambda total: total + 1)

    h = AgentHarness(reg.agents(), partitions=1)
    store = sums.partition(0)
    store.backend.write([(b"web1/load\x1f400000000000ea60", b"5"), (b"a\x1fb\x1f3fffffffffff15a0", b"7")])
    h.restart()  # re-reads the stores and re-indexes the open windows from them
    assert sums.windows("web1/load") == [(Window(60_000, 120_000), 5)]
    assert sums.windows("a\x1fb") == [(Window(-60_000, 0), 7)]


# -- the same as before for every input -----------------------------------------------------------
@given(key=any_text, start_ms=times)
def test_window_key__equals_the_previous_format_and_round_trips(key: str, start_ms: int) -> None:
    packed = pack_window_key(key, start_ms)
    assert packed == old_window_key(key, start_ms)
    assert unpack_window_key(packed) == (key, start_ms)
    assert packed.startswith(window_prefix(key))


@given(subject=no_sep, name=no_sep, size_ms=st.integers(1, (1 << 32) - 1), start_ms=times,
       bucket=st.integers(-(1 << 28), (1 << 32) - (1 << 28) - 1), event_id=no_sep)
def test_pipeline_keys__equal_the_previous_formats(subject: str, name: str, size_ms: int, start_ms: int,
                                                    bucket: int, event_id: str) -> None:
    assert _closed_key(subject, name, size_ms, start_ms) == old_closed_key(subject, name, size_ms, start_ms)
    rest = pack(identity_part(subject, name), pack_time(start_ms), event_id)
    assert rest == old_page_rest(subject, name, start_ms, event_id)
    assert BucketedTable.key(bucket, rest) == old_bucket_key(bucket, rest)
    assert BucketedTable.key(bucket, rest).startswith(BucketedTable.prefix(bucket))


# -- round trip and order -------------------------------------------------------------------------
@given(first=any_text, rest=st.lists(no_sep, max_size=3), time_ms=times)
def test_pack_unpack__round_trip(first: str, rest: list[str], time_ms: int) -> None:
    parts = [first, *rest]
    packed = pack(*parts, pack_time(time_ms))
    *unpacked, time_part = unpack(packed, len(parts) + 1)
    assert unpacked == parts and unpack_time(time_part) == time_ms
    assert packed.startswith(prefix(*parts))


@given(value=st.integers(-(1 << 20), (1 << 20) - 1), digits=st.integers(6, 12))
def test_pack_int__round_trips_at_fixed_width(value: int, digits: int) -> None:
    part = pack_int(value, digits=digits, offset=1 << 20)
    assert len(part) == digits and unpack_int(part, offset=1 << 20) == value


keyed_times = st.tuples(st.lists(sortable, min_size=1, max_size=1), times)


@given(st.integers(1, 3).flatmap(lambda n: st.lists(st.tuples(st.lists(sortable, min_size=n, max_size=n), times),
                                                     min_size=2, max_size=8)))
def test_packed_keys__sort_as_their_parts_then_time(entries: list[tuple[list[str], int]]) -> None:
    """As RocksDB orders them (UTF-8 bytes) and as Python orders the strings."""
    def packed(entry: tuple[list[str], int]) -> str:
        return pack(*entry[0], pack_time(entry[1]))

    by_tuple = sorted(entries, key=lambda e: (e[0], e[1]))
    assert sorted(entries, key=lambda e: packed(e).encode()) == by_tuple
    assert sorted(entries, key=packed) == by_tuple


@given(st.lists(st.tuples(sortable, sortable, times), min_size=2, max_size=8))
def test_identity_keys__sort_by_subject_name_then_time(entries: list[tuple[str, str, int]]) -> None:
    by_tuple = sorted(entries)
    assert sorted(entries, key=lambda e: pack(identity_part(e[0], e[1]), pack_time(e[2])).encode()) == by_tuple


@given(st.lists(st.integers(-(1 << 28), (1 << 32) - (1 << 28) - 1), min_size=2, max_size=8))
def test_pack_int__sorts_as_the_integers(values: list[int]) -> None:
    assert sorted(values, key=lambda v: pack_int(v, offset=1 << 28)) == sorted(values)


# -- errors -------------------------------------------------------------------------------------------
def test_out_of_range_values__are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"time 4611686018427387904 ms is out of the range"):
        pack_time(1 << 62)
    with pytest.raises(ValueError, match=r"time -4611686018427387905 ms is out of the range"):
        pack_time(MIN_TIME - 1)
    with pytest.raises(ValueError, match=r"-268435457 \(offset 268435456\) does not fit a 8-hex-digit key part"):
        BucketedTable.prefix(-(1 << 28) - 1)
    with pytest.raises(ValueError, match="does not fit a 8-hex-digit"):
        pack_int(1 << 32)


def test_malformed_keys__are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"store key 'web1/load' has 1 part\(s\), expected 2"):
        unpack_window_key("web1/load")
    with pytest.raises(ValueError, match="is not a packed time"):
        unpack_time("ea60")


def test_archive_pages__keyed_by_identity_then_newest_time_and_id() -> None:
    keys: list[tuple[int, str]] = []

    class Find:
        def put(self, time_ms: int, rest: str, value: Any, ctx: Any) -> None:
            keys.append((time_ms, rest))

    archive = ArchiveIndex(retention_ms=3_600_000)
    archive.find = Find()  # type: ignore[assignment]
    archive.write_page("web1", "load", ((NOW_MS, "e1", 5, ""), (NOW_MS + 1000, "e2", 6, "")), ctx=None)
    assert keys == [(NOW_MS + 1000, "web1\x1eload\x1f4000019b76daabe8\x1fe2")]
