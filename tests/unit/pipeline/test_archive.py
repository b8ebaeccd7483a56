"""The event-ids value format: every field round-trips, whatever characters subject and name hold,
and values stored by earlier versions (JSON lists) still read."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from app.pipeline.archive import LocationCodec, PageCodec, _location, _parse_location, refs_from_json


@given(offset=st.integers(0, 2**63 - 1), time_ms=st.integers(-(2**62), 2**62),
       type_name=st.sampled_from(["", "acme.Deploy"]), subject=st.text(min_size=1), name=st.text(min_size=1))
def test_location_round_trips_any_identity(offset: int, time_ms: int, type_name: str, subject: str,
                                           name: str) -> None:
    codec = LocationCodec()
    value = codec.decode(codec.encode(_location(offset, time_ms, type_name, subject, name)))
    assert _parse_location(value) == (offset, time_ms, type_name, subject, name)


def test_reads_the_json_lists_of_earlier_versions() -> None:
    old = orjson.dumps([3, 1234, 1_790_000_000_000, "", "host\x1f1", "load"])
    assert _parse_location(LocationCodec().decode(old)) == (1234, 1_790_000_000_000, "", "host\x1f1", "load")


def test_pages_and_waiting_references_read_back_as_tuples() -> None:
    """Stored as JSON arrays, read back as the EventRef tuples the (compiled) pipeline expects;
    references without an offset (written before it was kept) are dropped: they cannot be fetched."""
    codec = PageCodec()
    refs = ((1_000, "e1", 7, ""), (2_000, "e2", 8, "acme.Deploy"))
    assert codec.decode(codec.encode(("web1", "load", refs))) == ("web1", "load", refs)
    assert refs_from_json([[1_000, "e1", 7, ""], [900, "old"]]) == [(1_000, "e1", 7, "")]
