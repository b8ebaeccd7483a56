"""State expiry decisions (pure): when the state of an identity or of a rule group that went quiet
may be forgotten, so state stays bounded while hosts and containers come and go.

Time is event time only (a partition's watermark), so a backtest expires exactly what a live worker
does. The check is incremental, by time bucket: each piece of state has one event-time timer, at
the end of the bucket of its last activity plus the retention. A state active again later moves the
timer only when its activity enters a new bucket (`moves_check`), so an identity that reports every
few seconds re-arms it a few times per retention, not per event; when the timer fires, `decide`
says whether to forget the state, or when to look again. No scan of all state ever happens.

Something still owed (an absence deadline not yet judged, metric windows not yet closed) holds the
state: `decide` answers "look again after it", so a pending absence alert always fires first and
the state goes afterwards.

    retention = 7d:  last event at t ──────── t + 7d ─┐ bucket end ─> timer fires ─> forgotten
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter

__all__ = ["DEFAULT_STATE_RETENTION_MS", "MAX_BUCKET_MS", "ExpiryMetrics", "Verdict", "check_at_ms", "decide",
           "expiry_bucket_ms", "moves_check"]

#: Default retention of identity and rule-group state: a week without an event.
DEFAULT_STATE_RETENTION_MS: Final = 7 * 86_400_000
#: Largest bucket: state is forgotten at most this long after its retention passed.
MAX_BUCKET_MS: Final = 3_600_000
#: Smallest bucket (short retentions, as tests use).
_MIN_BUCKET_MS: Final = 1_000
#: Buckets per retention: how late (at most 1/8 of the retention) a check may come.
_BUCKETS_PER_RETENTION: Final = 8


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do when an expiry check fires: forget the state (`expire`), or check again at
    `recheck_at_ms` (None: never; expiry is off)."""

    expire: bool
    recheck_at_ms: int | None = None


_KEEP_FOREVER: Final = Verdict(False, None)
_EXPIRE: Final = Verdict(True, None)


def expiry_bucket_ms(retention_ms: int) -> int:
    """The width of the time buckets checks are grouped in, for a retention (> 0)."""
    return max(_MIN_BUCKET_MS, min(MAX_BUCKET_MS, retention_ms // _BUCKETS_PER_RETENTION))


def check_at_ms(active_ms: int, retention_ms: int) -> int:
    """When (event time) the state last active at `active_ms` is checked: the end of its activity's
    bucket plus the retention (never before `active_ms + retention_ms`)."""
    bucket_ms = expiry_bucket_ms(retention_ms)
    return (active_ms // bucket_ms + 1) * bucket_ms + retention_ms


def moves_check(before_ms: int | None, after_ms: int, retention_ms: int) -> bool:
    """Whether activity moving from `before_ms` (None: new state) to `after_ms` needs the check timer
    (re)armed: new state, or activity in a later bucket. False when expiry is off (retention <= 0)."""
    if retention_ms <= 0:
        return False
    if before_ms is None:
        return True
    bucket_ms = expiry_bucket_ms(retention_ms)
    return after_ms // bucket_ms > before_ms // bucket_ms


def decide(*, active_ms: int, watermark_ms: int, retention_ms: int, held_until_ms: int | None = None) -> Verdict:
    """Whether state last active at `active_ms` may be forgotten at `watermark_ms`.

    held_until_ms: the state still owes something due then (an absence deadline, a window close):
    keep it, and check again one bucket after that (or after the watermark, if later). Otherwise it
    expires once `active_ms + retention_ms <= watermark_ms`, else it is checked at `check_at_ms`.
    Retention <= 0 turns expiry off: keep, and never check again."""
    if retention_ms <= 0:
        return _KEEP_FOREVER
    if held_until_ms is not None:
        return Verdict(False, max(held_until_ms, watermark_ms) + expiry_bucket_ms(retention_ms))
    if active_ms + retention_ms <= watermark_ms:
        return _EXPIRE
    return Verdict(False, check_at_ms(active_ms, retention_ms))


class ExpiryMetrics:
    """`vigil_state_expired_total{kind=...}`: pieces of state forgotten, per kind (identity, or the
    rule state part: register, count, sequence, absent_for, throttle), in a registry of its own
    (one per stage; the worker's /metrics merges families of the same name)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.expired = Counter("vigil_state_expired", "state of identities and rule groups forgotten after "
                               "their retention without events, per kind", ["kind"], registry=self.registry)
        #: the same counts as plain numbers (for stats routes, backtests and benchmarks)
        self.counts: dict[str, int] = {}

    def count(self, kind: str, n: int = 1) -> None:
        """Count `n` expired pieces of state of `kind`."""
        self.expired.labels(kind=kind).inc(n)
        self.counts[kind] = self.counts.get(kind, 0) + n
