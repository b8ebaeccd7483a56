"""Syslog over TCP (RFC 6587): an incremental decoder for octet-counted and LF-delimited frames.

A frame starting with a digit is octet-counted (`MSG-LEN SP SYSLOG-MSG`); anything else runs to
the next LF (non-transparent framing; a trailing CR is dropped). The choice is made per frame,
as rsyslog and syslog-ng do, so a sender may mix them. Bytes arrive in arbitrary pieces: `feed`
keeps what it cannot complete yet, and `close` reports what a closed stream left unfinished.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FrameError", "SyslogFrameDecoder"]

# MSG-LEN digits accepted: 10 covers any length we would ever accept, and bounds the look-ahead.
_MAX_LENGTH_DIGITS = 10
_BETWEEN_FRAMES = b"\r\n\x00"


@dataclass(frozen=True)
class FrameError:
    """A frame that was dropped. `reason` is a short counter label; `detail` is for people; `raw` is
    what the decoder still held of the dropped bytes (at most the frame limit, for the dead-letter
    topic: an oversized frame is skipped as it streams in, never buffered whole)."""

    reason: str  # "oversized" | "truncated" | "bad_frame"
    detail: str
    raw: bytes = field(default=b"", repr=False, compare=False)


class SyslogFrameDecoder:
    """Turns a TCP byte stream into syslog messages (bytes) and FrameErrors, in stream order."""

    def __init__(self, max_frame_bytes: int = 65_536) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._skip_bytes = 0  # rest of an oversized octet-counted frame, still to be discarded
        self._skip_line = False  # discarding up to the next LF (oversized or unframeable data)

    @property
    def pending_bytes(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        """Add received bytes; return the frames (and errors) they complete."""
        self._buffer += data
        out: list[bytes | FrameError] = []
        while self._step(out):
            pass
        return out

    def close(self) -> list[bytes | FrameError]:
        """The stream ended: an unfinished octet-counted frame is truncated; an unterminated last
        LF-delimited line is taken as a message (many senders omit the final LF)."""
        out: list[bytes | FrameError] = []
        buffer, self._buffer = self._buffer.lstrip(_BETWEEN_FRAMES), bytearray()
        if self._skip_bytes or self._skip_line or not buffer:
            self._skip_bytes, self._skip_line = 0, False
            return out
        if buffer[:1].isdigit():
            header, separator, body = bytes(buffer).partition(b" ")
            if separator and header.isdigit():
                detail = f"connection closed {len(body)} bytes into a {int(header)}-byte frame"
            else:
                detail = f"connection closed inside the frame header {header[:16]!r}"
            out.append(FrameError("truncated", detail, bytes(buffer[:self.max_frame_bytes])))
        elif len(buffer) <= self.max_frame_bytes:
            out.append(bytes(buffer).rstrip(b"\r"))
        return out

    def _step(self, out: list[bytes | FrameError]) -> bool:
        """Consume at most one frame from the buffer; False when more bytes are needed."""
        buffer = self._buffer
        if self._skip_bytes:
            dropped = min(self._skip_bytes, len(buffer))
            del buffer[:dropped]
            self._skip_bytes -= dropped
            if self._skip_bytes:
                return False
        if self._skip_line:
            newline = buffer.find(b"\n")
            if newline < 0:
                buffer.clear()
                return False
            del buffer[:newline + 1]
            self._skip_line = False
        leading = len(buffer) - len(buffer.lstrip(_BETWEEN_FRAMES))
        del buffer[:leading]
        if not buffer:
            return False
        if buffer[:1].isdigit():
            return self._octet_counted(out)
        return self._lf_delimited(out)

    def _octet_counted(self, out: list[bytes | FrameError]) -> bool:
        buffer = self._buffer
        digits = 0
        while digits < len(buffer) and digits <= _MAX_LENGTH_DIGITS and buffer[digits:digits + 1].isdigit():
            digits += 1
        if digits == len(buffer) and digits <= _MAX_LENGTH_DIGITS:
            return False  # the length may go on in the next piece
        if digits > _MAX_LENGTH_DIGITS or buffer[digits:digits + 1] != b" ":
            line_end = buffer.find(b"\n", 0, self.max_frame_bytes)
            out.append(FrameError("bad_frame", f"expected 'MSG-LEN SP' at frame start, got "
                                               f"{bytes(buffer[:digits + 1])[:16]!r}",
                                  bytes(buffer[:line_end if line_end >= 0 else self.max_frame_bytes])))
            self._skip_line = True  # no length to trust: resynchronise on the next LF
            return True
        length = int(buffer[:digits])
        if length == 0:
            out.append(FrameError("bad_frame", "MSG-LEN is 0", bytes(buffer[:digits + 1])))
            del buffer[:digits + 1]
            return True
        if length > self.max_frame_bytes:
            kept = bytes(buffer[:digits + 1 + self.max_frame_bytes])  # the frame's start, as far as it came
            out.append(FrameError("oversized", f"{length}-byte frame is over the {self.max_frame_bytes}-byte limit",
                                  kept))
            del buffer[:digits + 1]
            self._skip_bytes = length
            return True
        end = digits + 1 + length
        if len(buffer) < end:
            return False
        out.append(bytes(buffer[digits + 1:end]))
        del buffer[:end]
        return True

    def _lf_delimited(self, out: list[bytes | FrameError]) -> bool:
        buffer = self._buffer
        newline = buffer.find(b"\n", 0, self.max_frame_bytes + 2)
        if newline < 0:
            if len(buffer) > self.max_frame_bytes + 1:
                out.append(FrameError("oversized", f"line is over the {self.max_frame_bytes}-byte limit",
                                      bytes(buffer[:self.max_frame_bytes])))
                buffer.clear()
                self._skip_line = True
            return False
        line = bytes(buffer[:newline]).rstrip(b"\r")
        del buffer[:newline + 1]
        if len(line) > self.max_frame_bytes:
            out.append(FrameError("oversized", f"line is over the {self.max_frame_bytes}-byte limit",
                                  line[:self.max_frame_bytes]))
        elif line:
            out.append(line)
        return True
