"""The sinks' own counters on the worker's /metrics, one registry per sinks stage (labelled by sink)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DROP_REASONS", "SinkMetrics"]

#: Why samples were given up: the sender's queue was full (the pipeline never waits), the disk buffer
#: was full (the oldest batches go), the destination refused them for good (a 4xx other than 408/429),
#: a buffered batch did not read back, or the window ended longer ago than the sink's max_age.
DROP_REASONS = ("queue_full", "buffer_full", "rejected", "corrupt", "too_old")


class SinkMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sent = Counter("vigil_sink_samples_sent", "samples the destination accepted", ["sink"], registry=r)
        self.failures = Counter("vigil_sink_send_failures", "requests (or TCP writes) that failed", ["sink"],
                                registry=r)
        self.retries = Counter("vigil_sink_retries", "batches sent again after a retriable failure", ["sink"],
                               registry=r)
        self.buffered_bytes = Gauge("vigil_sink_buffered_bytes", "bytes in the sink's on-disk buffer", ["sink"],
                                    registry=r)
        self.dropped = Counter("vigil_sink_dropped_samples", "samples given up, by reason: " + ", ".join(DROP_REASONS),
                               ["sink", "reason"], registry=r)
        self.series_cut = Counter("vigil_sink_series_cut", "Prometheus series not shown: over the sink's max_series",
                                  ["sink"], registry=r)
        self.series = Gauge("vigil_sink_series", "Prometheus series shown on /metrics", ["sink"], registry=r)
