"""Time-ordered unique ids (UUIDv7 layout): sortable by creation time, so id indexes scan in order."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

__all__ = ["deterministic_id", "id_time_ms", "new_id"]


def new_id(now_ms: int | None = None) -> str:
    """A new UUIDv7 string: 48-bit ms timestamp, version 7, 74 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 6 & ((1 << 12) - 1)) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def id_time_ms(id_: str) -> int | None:
    """The creation time embedded in a UUIDv7 id, or None for other ids."""
    try:
        u = uuid.UUID(id_)
    except ValueError:
        return None
    return u.int >> 80 if u.version == 7 else None


def deterministic_id(*parts: str) -> str:
    """A stable id (UUIDv5-like, SHA-256 based) from its parts: replays produce the same id.

    The string of `uuid.UUID(bytes=digest[:16], version=5)`, formatted directly: the pipeline makes
    one per alert, and the UUID object's bit arithmetic in Python cost several times the hash."""
    digest = bytearray(hashlib.sha256("\x1f".join(parts).encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
