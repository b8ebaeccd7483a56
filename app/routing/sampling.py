"""The deterministic sample decision: a record is in a route's sample when a stable 32-bit hash of
its identity (the Kafka key, `subject/name`) or of its event id falls below the route's share of
2**32. The same bytes always give the same answer, in every process and after every restart; and
a 10% sample of identities is a subset of a 20% one (every route uses the same hash), so samples
nest instead of drawing independent sets.
"""

from __future__ import annotations

import zlib
from typing import Final

from mypy_extensions import i64

__all__ = ["HASH_SPACE", "sample_point", "sample_threshold"]

HASH_SPACE: Final = 1 << 32
_MASK: Final = 0xFFFFFFFF
#: 2**32 / the golden ratio, odd: multiplying by it is a bijection of 32-bit values that mixes low bits upwards
_GOLDEN: Final = 0x9E3779B1


def sample_point(data: bytes) -> int:
    """A stable hash of `data` in [0, 2**32): CRC-32 (in C, stable by definition) times a large odd
    constant, modulo 2**32 (Fibonacci hashing): the high bits, which the threshold compares first,
    then depend on every bit of the CRC, so keys differing only in their last characters spread
    over the whole range. Cheap: it runs for every event a by-event_id sample sees."""
    crc: i64 = zlib.crc32(data)
    golden: i64 = _GOLDEN
    # crc * _GOLDEN mod 2**32 in two halves, in 64-bit machine integers when compiled (i64): the
    # whole product needs 64 bits unsigned, past a signed i64; each half's stays within 49 bits.
    # (As plain int, compiled code multiplied big integers: a factor past 2**31 leaves its fast path.)
    return int(((crc & 0xFFFF) * golden + ((((crc >> 16) * golden) & 0xFFFF) << 16)) & _MASK)


def sample_threshold(percent: float) -> int:
    """The points below which a record is in a `percent` % sample (100: all, 0: none)."""
    return round(HASH_SPACE * min(max(percent, 0.0), 100.0) / 100.0)
