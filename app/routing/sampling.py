"""The deterministic sample decision: a record is in a route's sample when a stable 32-bit hash of
its identity (the Kafka key, `subject/name`) or of its event id falls below the route's share of
2**32. The same bytes always give the same answer, in every process and after every restart; and
a 10% sample of identities is a subset of a 20% one (every route uses the same hash), so samples
nest instead of drawing independent sets.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["HASH_SPACE", "sample_point", "sample_threshold"]

HASH_SPACE: Final = 1 << 32
_MASK: Final = 0xFFFFFFFF


def sample_point(data: bytes) -> int:
    """A stable hash of `data` in [0, 2**32): CRC-32 (in C, stable by definition), then murmur3's
    finaliser so that keys differing only in their last characters spread over the whole range."""
    h = zlib.crc32(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def sample_threshold(percent: float) -> int:
    """The points below which a record is in a `percent` % sample (100: all, 0: none)."""
    return round(HASH_SPACE * min(max(percent, 0.0), 100.0) / 100.0)
