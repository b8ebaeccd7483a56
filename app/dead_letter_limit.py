"""How many dead letters a process writes: a token bucket per (source, reason), and summaries of
what was held back, so a flood of bad input cannot fill the cluster's dead-letter topics.

Every dead-letter producer (the bridges, the worker's decode and agent failures, the pipeline's
rejections) asks `DeadLetterLimiter.admit` before writing one. Per (source, reason) a bucket holds up
to `burst` dead letters and refills at `rate_per_s`; while it is empty the dead letter is not
written but counted (`vigil_dead_letters_summarised_total{source,reason}`), and once per
`summary_interval_s` the producer writes one small JSON record in its place
(`due` returns them): "K records from <source> with <reason> were summarised, not written, between
T1 and T2". Only dead letters pass through here: valid input never does, so nothing valid is ever
dropped by it. The rejection itself is still answered, counted and logged as before.

Pure: no Kafka, no clock of its own (callers pass `now_ms`, so tests control time), thread-safe.
Limits come from the settings (`dead_letter_limits`; vigil.yaml or VIGIL_* env):
    dlq_rate_per_s          VIGIL_DLQ_RATE_PER_S          per second per (source, reason) (default 10)
    dlq_burst               VIGIL_DLQ_BURST               at most this many at once (default 100)
    dlq_summary_interval_s  VIGIL_DLQ_SUMMARY_INTERVAL_S  one summary per (source, reason) at most this
                                                          often (default 60)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # prometheus_client is imported when scraped; app.config imports this module's defaults
    from prometheus_client.metrics_core import Metric

    from app.config import Settings

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE_PER_S",
    "DEFAULT_SUMMARY_INTERVAL_S",
    "OTHER",
    "SUMMARISED_METRIC",
    "SUMMARY_REASON",
    "DeadLetterLimiter",
    "DeadLetterLimiterCollector",
    "DeadLetterLimits",
    "Summary",
    "dead_letter_limits",
]

#: Counter of dead letters not written (summarised instead), by source and reason.
SUMMARISED_METRIC: Final = "vigil_dead_letters_summarised"
#: `vigil.reason` of a summary record (the reason it summarises is in its body and `vigil.summarised.reason`).
SUMMARY_REASON: Final = "summarised"
#: Source and reason of the one bucket every further key shares once `max_keys` are in use.
OTHER: Final = "(other)"

#: Defaults of Settings.dlq_rate_per_s, dlq_burst and dlq_summary_interval_s.
DEFAULT_RATE_PER_S: Final = 10.0
DEFAULT_BURST: Final = 100
DEFAULT_SUMMARY_INTERVAL_S: Final = 60.0


class DeadLetterLimits(BaseModel):
    """How many dead letters per (source, reason) are written, and how often held-back ones are summarised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_s: float = Field(DEFAULT_RATE_PER_S, gt=0,
                              description="dead letters per second per (source, reason), sustained")
    burst: int = Field(DEFAULT_BURST, ge=1,
                       description="dead letters per (source, reason) written at once before the rate applies")
    summary_interval_s: float = Field(DEFAULT_SUMMARY_INTERVAL_S, gt=0,
                                      description="one summary record per (source, reason) at most this often")
    #: (source, reason) pairs with a bucket of their own; further ones share one (sources and reasons
    #: are short fixed labels, so this only guards against a caller passing free text)
    max_keys: int = Field(1000, ge=1)


def dead_letter_limits(settings: Settings) -> DeadLetterLimits:
    """The dead-letter limits a process's settings give (`dlq_*`, validated there)."""
    return DeadLetterLimits(rate_per_s=settings.dlq_rate_per_s, burst=settings.dlq_burst,
                            summary_interval_s=settings.dlq_summary_interval_s)


@dataclass(frozen=True)
class Summary:
    """Dead letters of one (source, reason) that were counted instead of written, in one interval."""

    source: str
    reason: str
    count: int
    first_ms: int
    last_ms: int
    #: the dead-letter topic the held-back records would have gone to (callers with several)
    topic: str = ""

    def text(self) -> str:
        """The summary in words (the `vigil.error` header)."""
        return (f"{self.count} record(s) from {self.source} with {self.reason} were summarised, not written, "
                f"between {_iso(self.first_ms)} and {_iso(self.last_ms)} (dead-letter rate limit: VIGIL_DLQ_*)")

    def value(self) -> bytes:
        """The summary record's JSON body."""
        return json.dumps({"summarised": self.count, "source": self.source, "reason": self.reason,
                           "from_ms": self.first_ms, "to_ms": self.last_ms, "from": _iso(self.first_ms),
                           "to": _iso(self.last_ms), "text": self.text()}, sort_keys=True).encode()

    def headers(self) -> dict[str, str]:
        """Kafka headers, `vigil.*` like every dead letter's."""
        return {"vigil.source": self.source, "vigil.reason": SUMMARY_REASON, "vigil.error": self.text(),
                "vigil.summarised": str(self.count), "vigil.summarised.reason": self.reason}

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """`headers()` as a producer takes them."""
        return [(name, value.encode()) for name, value in self.headers().items()]


def _iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Bucket:
    tokens: float
    refilled_ms: int
    topic: str = ""
    #: held back since the last summary, and when the first and last of them came
    pending: int = 0
    first_ms: int = 0
    last_ms: int = 0
    #: held back since the start (the Prometheus counter)
    total: int = 0


class DeadLetterLimiter:
    """Token buckets per (source, reason); see the module docstring. Thread-safe."""

    def __init__(self, limits: DeadLetterLimits | None = None) -> None:
        self.limits = limits or DeadLetterLimits()
        self._rate_per_ms = self.limits.rate_per_s / 1000.0
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, source: str, reason: str, now_ms: int, *, topic: str = "") -> bool:
        """True: write this dead letter. False: do not; it is counted and will be summarised."""
        with self._lock:
            bucket = self._bucket(source, reason, now_ms, topic)
            elapsed_ms = max(0, now_ms - bucket.refilled_ms)  # a clock stepping back refills nothing
            bucket.tokens = min(float(self.limits.burst), bucket.tokens + elapsed_ms * self._rate_per_ms)
            bucket.refilled_ms = max(bucket.refilled_ms, now_ms)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            if not bucket.pending:
                bucket.first_ms = now_ms
            bucket.pending += 1
            bucket.last_ms = now_ms
            bucket.total += 1
            return False

    def due(self, now_ms: int, *, everything: bool = False) -> list[Summary]:
        """Summaries to write now: per (source, reason) with dead letters held back, once its first
        one is `summary_interval_s` old (all of them with `everything`, e.g. when stopping). Each
        held-back dead letter is in exactly one summary."""
        interval_ms = self.limits.summary_interval_s * 1000.0
        out: list[Summary] = []
        with self._lock:
            for (source, reason), bucket in self._buckets.items():
                if bucket.pending and (everything or now_ms - bucket.first_ms >= interval_ms):
                    out.append(Summary(source, reason, bucket.pending, bucket.first_ms, bucket.last_ms, bucket.topic))
                    bucket.pending = 0
        return out

    def summarised(self, source: str, reason: str) -> int:
        """Dead letters of (source, reason) held back since the start."""
        with self._lock:
            bucket = self._buckets.get((source, reason))
            return bucket.total if bucket is not None else 0

    def totals(self) -> dict[tuple[str, str], int]:
        """Held-back dead letters since the start by (source, reason), for those with any."""
        with self._lock:
            return {key: bucket.total for key, bucket in self._buckets.items() if bucket.total}

    def collector(self) -> DeadLetterLimiterCollector:
        """A prometheus_client collector of `vigil_dead_letters_summarised_total{source,reason}`."""
        return DeadLetterLimiterCollector(self)

    def _bucket(self, source: str, reason: str, now_ms: int, topic: str) -> _Bucket:
        key = (source, reason)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.limits.max_keys:
                key = (OTHER, OTHER)
                bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=float(self.limits.burst), refilled_ms=now_ms, topic=topic)
        return bucket


class DeadLetterLimiterCollector:
    """Exposes a DeadLetterLimiter's counts through prometheus_client (read at scrape time). Yields
    nothing until something was held back, so two limiters in one exposition rarely both name it."""

    def __init__(self, limiter: DeadLetterLimiter) -> None:
        self.limiter = limiter

    def collect(self) -> Iterator[Metric]:
        """The counter family, when any dead letter was held back."""
        from prometheus_client.core import CounterMetricFamily

        totals = self.limiter.totals()
        if not totals:
            return
        family = CounterMetricFamily(SUMMARISED_METRIC, "Dead letters not written (rate limit) but counted and "
                                     "summarised, by source and reason", labels=["source", "reason"])
        for (source, reason), count in sorted(totals.items()):
            family.add_metric([source, reason], float(count))
        yield family

    def describe(self) -> list[Metric]:
        """Nothing to describe ahead of a scrape (the family appears with its first count)."""
        return []
