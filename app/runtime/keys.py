"""Ordered store keys: the one codec for table keys made of several parts whose order matters
(RocksDB keeps keys sorted by their bytes; range reads and pruning scan key prefixes).

    key = pack(identity_part("web1", "load"), pack_int(60_000), pack_time(start_ms))
    identity, size_hex, start_hex = unpack(key, 3)
    for stored_key, value in store.items(prefix(identity_part("web1", "load"))): ...

The format (the bytes are the UTF-8 of these strings):

- parts are joined by SEP, "\\x1f" (ASCII unit separator);
- an identity part is subject + IDENTITY_SEP ("\\x1e") + name;
- a time (ms since the epoch, -2**62 <= time_ms < 2**62) is 16 lowercase hex digits of
  time_ms + 2**62;
- other integers (a window size, an hour bucket) are lowercase hex of value + offset, zero-padded to
  a fixed width (8 digits unless the layout says otherwise).

These are the exact formats the windowed tables, the tracker, the archive index and the bucketed
tables wrote before this module existed: state stored by earlier versions restores unchanged
(tests/unit/runtime/test_keys.py pins them).

Why the keys sort: fixed-width hex of a non-negative number sorts as the number, and the separators
sort below every printable character, so a part sorts before any longer part it is a prefix of, as
in tuple order. Packed keys therefore sort as their tuples of parts when no part contains a
character at or below SEP ("\\x00"-"\\x1f", control characters), an identity part as its
(subject, name) when neither contains one. `unpack` splits from the right: the first part may
contain anything (a windowed table's user key may hold SEP), the others must not contain SEP.
Neither is checked when packing: this is on the per-event path.

Compiled with mypyc with the pipeline (app.native): keep it fully annotated.
"""

from __future__ import annotations

from typing import Final

__all__ = ["IDENTITY_SEP", "MAX_TIME_MS", "MIN_TIME_MS", "SEP", "TIME_DIGITS", "TIME_OFFSET", "identity_part", "pack",
           "pack_int", "pack_time", "prefix", "unpack", "unpack_int", "unpack_time"]

#: Between the parts of a key.
SEP: Final = "\x1f"
#: Between the subject and the name inside an identity part.
IDENTITY_SEP: Final = "\x1e"
#: Added to a time so that any ms time (negative too) is a non-negative 16-digit hex number.
TIME_OFFSET: Final = 1 << 62
#: Hex digits of a packed time.
TIME_DIGITS: Final = 16
#: The times a key can hold (both fit mypyc's unboxed ints: the range check costs no allocation).
MIN_TIME_MS: Final = -(1 << 62)
MAX_TIME_MS: Final = (1 << 62) - 1


def pack(*parts: str) -> str:
    """The key of these parts, in order (parts after the first must not contain SEP)."""
    return SEP.join(parts)


def prefix(*parts: str) -> str:
    """The prefix every key whose leading parts are exactly `parts` starts with (for range scans);
    "" for no parts."""
    return SEP.join(parts) + SEP if parts else ""


def unpack(key: str, count: int) -> list[str]:
    """The `count` parts of a packed key (split from the right: the first part keeps any SEP).
    Raises ValueError when the key has fewer parts."""
    parts = key.rsplit(SEP, count - 1)
    if len(parts) != count:
        raise ValueError(f"store key {key!r} has {len(parts)} part(s), expected {count} separated by {SEP!r}: "
                         f"it was not written by this layout (a table shared by two key layouts?)")
    return parts


def identity_part(subject: str, name: str) -> str:
    """The part of a key naming an identity (sorts by subject, then name)."""
    return subject + IDENTITY_SEP + name


def pack_time(time_ms: int) -> str:
    """A time in ms (-2**62 <= time_ms < 2**62, either side of the epoch) as a fixed-width key part
    that sorts as the time."""
    if time_ms < MIN_TIME_MS or time_ms > MAX_TIME_MS:
        raise ValueError(f"time {time_ms} ms is out of the range a key can hold (-2**62 <= time_ms < 2**62)")
    # %-formatting: compiled, about half the cost of an f-string with a format spec
    return "%016x" % (time_ms + TIME_OFFSET)


def unpack_time(part: str) -> int:
    """The time in ms of a part made by `pack_time`."""
    if len(part) != TIME_DIGITS:
        raise ValueError(f"key part {part!r} is not a packed time ({TIME_DIGITS} hex digits)")
    return int(part, 16) - TIME_OFFSET


def pack_int(value: int, *, digits: int = 8, offset: int = 0) -> str:
    """An integer as a key part of `digits` hex digits that sorts as the integer: value + offset
    must fit (0 <= value + offset < 16**digits; the offset makes room for negative values)."""
    shifted = value + offset
    if shifted < 0 or shifted >= 1 << (4 * digits):
        raise ValueError(f"{value} (offset {offset}) does not fit a {digits}-hex-digit key part")
    return "%0*x" % (digits, shifted)  # noqa: UP031 (compiled: cheaper than a format spec, see pack_time)


def unpack_int(part: str, *, offset: int = 0) -> int:
    """The integer of a part made by `pack_int` with the same offset."""
    return int(part, 16) - offset
