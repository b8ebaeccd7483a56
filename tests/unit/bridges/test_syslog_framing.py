"""RFC 6587 framing: octet-counted and LF-delimited frames, in any pieces, with bad frames dropped."""

from __future__ import annotations

import pytest

from app.bridges.parsers.syslog_framing import FrameError, SyslogFrameDecoder

STREAM = (b"29 <13>1 - h app - - - first one"
          b"<13>second, LF framed\n"
          b"<13>third, CRLF framed\r\n"
          b"\n"
          b"18 <13>fourth\nwith LF")


def _decode(data: bytes, *, piece_bytes: int, max_frame_bytes: int = 1024) -> list[bytes | FrameError]:
    decoder = SyslogFrameDecoder(max_frame_bytes)
    out: list[bytes | FrameError] = []
    for start in range(0, len(data), piece_bytes):
        out += decoder.feed(data[start:start + piece_bytes])
    return out + decoder.close()


@pytest.mark.parametrize("piece_bytes", [1, 2, 3, 7, 64, 10_000])
def test_mixed_framing__yields_the_same_messages_however_the_bytes_are_split(piece_bytes: int) -> None:
    assert _decode(STREAM, piece_bytes=piece_bytes) == [
        b"<13>1 - h app - - - first one",
        b"<13>second, LF framed",
        b"<13>third, CRLF framed",
        b"<13>fourth\nwith LF",  # octet counting carries LFs inside a message
    ]


def test_oversized_octet_counted_frame__is_reported_and_skipped_exactly() -> None:
    data = b"20 " + b"x" * 20 + b"5 <13>a"
    out = _decode(data, piece_bytes=4, max_frame_bytes=10)
    assert [type(item) for item in out] == [FrameError, bytes]
    assert out[0].reason == "oversized"  # type: ignore[union-attr]
    assert out[1] == b"<13>a"
    # What was still in hand of the dropped frame is kept (for the dead-letter topic), within the limit.
    assert out[0].raw == b"20 " + b"x"  # type: ignore[union-attr]


@pytest.mark.parametrize(("data", "reason", "raw"), [
    (b"12abc\n<13>ok\n", "bad_frame", b"12abc"),
    (b"0 <13>ok\n", "bad_frame", b"0 "),
    (b"<13>" + b"y" * 20 + b"\n", "oversized", b"<13>" + b"y" * 6),
    (b"<13>" + b"y" * 40, "oversized", b"<13>" + b"y" * 6),
    (b"9 <13>cut", "truncated", b"9 <13>cut"),
])
def test_frame_errors__carry_what_was_dropped_up_to_the_limit(data: bytes, reason: str, raw: bytes) -> None:
    errors = [item for item in _decode(data, piece_bytes=len(data), max_frame_bytes=10)
              if isinstance(item, FrameError)]
    assert [(e.reason, e.raw) for e in errors] == [(reason, raw)]


def test_oversized_line__is_reported_and_the_next_line_still_arrives() -> None:
    data = b"<13>" + b"y" * 50 + b"\n<13>ok\n"
    out = _decode(data, piece_bytes=5, max_frame_bytes=16)
    assert [getattr(item, "reason", item) for item in out] == ["oversized", b"<13>ok"]


def test_truncated_octet_counted_frame__is_reported_at_close() -> None:
    decoder = SyslogFrameDecoder()
    assert decoder.feed(b"100 <13>only part") == []
    (error,) = decoder.close()
    assert isinstance(error, FrameError)
    assert error.reason == "truncated"
    assert "100-byte frame" in error.detail


def test_unterminated_last_line__is_taken_as_a_message_at_close() -> None:
    decoder = SyslogFrameDecoder()
    assert decoder.feed(b"<13>no newline") == []
    assert decoder.close() == [b"<13>no newline"]


@pytest.mark.parametrize("data", [b"12a <13>x\n<13>next\n", b"12345678901 <13>x\n<13>next\n", b"0 \n<13>next\n"])
def test_bad_frame_header__is_reported_and_decoding_resynchronises(data: bytes) -> None:
    out = _decode(data, piece_bytes=3)
    assert isinstance(out[0], FrameError) and out[0].reason == "bad_frame"
    assert out[-1] == b"<13>next"


def test_pending_bytes__are_bounded_by_the_frame_limit() -> None:
    decoder = SyslogFrameDecoder(max_frame_bytes=100)
    for _ in range(100):
        decoder.feed(b"z" * 1000)
    assert decoder.pending_bytes <= 101


def test_max_frame_bytes__must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SyslogFrameDecoder(0)
