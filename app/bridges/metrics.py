"""Counters of what each bridge accepted and rejected (by source and reason), in Prometheus form.

Each bridge instance gets its own CollectorRegistry, so tests and several bridges in one process
never share counts. Reasons are short fixed labels (never message text) to keep series bounded.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "BridgeMetrics"]

# Rejections are logged, but a flood of bad input must not become a flood of log lines: per source
# and reason, at most this many lines per window, then one summary line with the count.
_LOG_LINES_PER_WINDOW = 10
_LOG_WINDOW_S = 60.0


class BridgeMetrics:
    """`vigil_bridge_accepted_total{source}`, `vigil_bridge_rejected_total{source,reason}`,
    `vigil_bridge_partial_total{source,field}` (accepted events some field of which could not be read
    from the input: one count per missing field, e.g. field="host"), `vigil_bridge_retried_total{source,reason}`
    (events sent again after Kafka or the registry could not take them) and
    `vigil_bridge_retry_pending{source}` (events waiting for that) and `vigil_bridge_duplicates_total{source}`
    (deliveries answered as already accepted, nothing produced)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._accepted = Counter("vigil_bridge_accepted", "Events accepted and handed to the bus",
                                 ["source"], registry=self.registry)
        self._rejected = Counter("vigil_bridge_rejected", "Requests, items or messages rejected/dropped",
                                 ["source", "reason"], registry=self.registry)
        self._partial = Counter("vigil_bridge_partial", "Accepted events with a field that could not be read, "
                                "per missing field", ["source", "field"], registry=self.registry)
        self._retried = Counter("vigil_bridge_retried", "Events kept and sent again because the bus or the "
                                "schema registry could not take them", ["source", "reason"], registry=self.registry)
        self._pending = Gauge("vigil_bridge_retry_pending", "Events kept in memory waiting for the bus or the "
                              "schema registry", ["source"], registry=self.registry)
        self._duplicates = Counter("vigil_bridge_duplicates", "Deliveries recognised as already accepted "
                                   "(redelivery, resend, retried Idempotency-Key): answered, nothing produced",
                                   ["source"], registry=self.registry)
        self._log = logger or logging.getLogger("app.bridges")
        self._log_windows: dict[tuple[str, str], tuple[float, int]] = {}

    def accepted(self, source: str, count: int = 1) -> None:
        """Count events handed to the sink."""
        if count:
            self._accepted.labels(source=source).inc(count)

    def rejected(self, source: str, reason: str, detail: str = "", count: int = 1) -> None:
        """Count a rejection/drop and log its reason (rate-limited per source and reason)."""
        self._rejected.labels(source=source, reason=reason).inc(count)
        self._log_rejection(source, reason, detail)

    def duplicate(self, source: str) -> None:
        """Count a delivery answered as a duplicate."""
        self._duplicates.labels(source=source).inc()

    def duplicate_count(self, source: str) -> float:
        """Current duplicate count."""
        return self.registry.get_sample_value("vigil_bridge_duplicates_total", {"source": source}) or 0.0

    def partial(self, source: str, fields: list[str]) -> None:
        """Count an event parsed only in part, once for each field it lacks."""
        for name in fields:
            self._partial.labels(source=source, field=name).inc()

    def partial_count(self, source: str, field: str) -> float:
        """Current count of events of `source` that lacked `field`."""
        value = self.registry.get_sample_value("vigil_bridge_partial_total", {"source": source, "field": field})
        return value or 0.0

    def retried(self, source: str, reason: str, count: int = 1) -> None:
        """Count events kept for another try (not logged here: the bridge logs the outage once)."""
        self._retried.labels(source=source, reason=reason).inc(count)

    def set_pending(self, source: str, count: int) -> None:
        """How many events wait for another try now."""
        self._pending.labels(source=source).set(count)

    def retried_count(self, source: str, reason: str) -> float:
        """Current retried count for one reason."""
        value = self.registry.get_sample_value("vigil_bridge_retried_total", {"source": source, "reason": reason})
        return value or 0.0

    def pending_count(self, source: str) -> float:
        """Events waiting for another try now."""
        return self.registry.get_sample_value("vigil_bridge_retry_pending", {"source": source}) or 0.0

    def accepted_count(self, source: str) -> float:
        """Current accepted count (tests, status lines)."""
        return self.registry.get_sample_value("vigil_bridge_accepted_total", {"source": source}) or 0.0

    def rejected_count(self, source: str, reason: str) -> float:
        """Current rejected count for one reason."""
        value = self.registry.get_sample_value("vigil_bridge_rejected_total", {"source": source, "reason": reason})
        return value or 0.0

    def exposition(self) -> bytes:
        """The Prometheus text exposition of these counters."""
        return generate_latest(self.registry)

    def _log_rejection(self, source: str, reason: str, detail: str) -> None:
        now = time.monotonic()
        start, seen = self._log_windows.get((source, reason), (now, 0))
        if now - start >= _LOG_WINDOW_S:
            if seen > _LOG_LINES_PER_WINDOW:
                self._log.warning("%s: %d more rejected (%s) in the last %.0fs", source,
                                  seen - _LOG_LINES_PER_WINDOW, reason, now - start)
            start, seen = now, 0
        seen += 1
        self._log_windows[(source, reason)] = (start, seen)
        if seen <= _LOG_LINES_PER_WINDOW:
            self._log.warning("%s: rejected (%s): %s", source, reason, detail or "-")
