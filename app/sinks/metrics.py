"""The sinks' own counters on the worker's /metrics, one registry per sinks stage (labelled by sink).

When the push sinks run in a child process (app.sinks.process) the child counts in a SinkMetrics of
its own and reports `relayed_values()` now and then; the worker's MetricRelay adds what grew since
the last report to the worker's counters, so /metrics shows one set of counters either way."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DROP_REASONS", "MetricRelay", "MetricValue", "SinkMetrics"]

#: Why samples were given up: the sender's queue was full (the pipeline never waits), the disk buffer
#: was full (the oldest batches go), the destination refused them for good (a 4xx other than 408/429),
#: a buffered batch did not read back, or the window ended longer ago than the sink's max_age.
DROP_REASONS = ("queue_full", "buffer_full", "rejected", "corrupt", "too_old")

#: (metric name, sorted label pairs, value): a counter's total or a gauge's value
MetricValue = tuple[str, tuple[tuple[str, str], ...], float]


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
        self.windows_resent = Counter(
            "vigil_sink_windows_resent", "windows handed again to a new sender process: the one that stopped "
            "had not yet sent or buffered them (a destination may receive them twice)", registry=r)
        #: what the push sinks count, by metric name (relayed from a sender process)
        self.relayed: dict[str, Counter | Gauge] = {
            "vigil_sink_samples_sent": self.sent, "vigil_sink_send_failures": self.failures,
            "vigil_sink_retries": self.retries, "vigil_sink_buffered_bytes": self.buffered_bytes,
            "vigil_sink_dropped_samples": self.dropped}

    def relayed_values(self) -> list[MetricValue]:
        """The push sinks' counters and gauges now, for MetricRelay.apply in another process."""
        out: list[MetricValue] = []
        for name, metric in self.relayed.items():
            total = f"{name}_total" if isinstance(metric, Counter) else name
            for family in metric.collect():
                out.extend((name, tuple(sorted(s.labels.items())), s.value) for s in family.samples
                           if s.name == total)
        return out


class MetricRelay:
    """Applies a child process's reports (cumulative values) to this process's SinkMetrics:
    counters grow by what grew since the last report, gauges take the value. `restarted()`: a new
    child counts from zero again (the counters here keep what the old one had counted)."""

    def __init__(self, metrics: SinkMetrics) -> None:
        self.metrics = metrics
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        #: the labelled child of each (name, labels) reported (a labels() call per value and
        #: report, ten reports a second, took the GIL from the pipeline for ~1% of a CPU)
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def apply(self, values: list[MetricValue]) -> None:
        """Take one report (values that did not change since the last one cost a lookup)."""
        last, children = self._last, self._children
        for name, labels, value in values:
            key = (name, labels)
            before = last.get(key)
            if before == value:
                continue
            child = children.get(key)
            if child is None:
                metric = self.metrics.relayed.get(name)
                if metric is None:
                    continue
                child = children[key] = metric.labels(**dict(labels))
            last[key] = value
            if isinstance(child, Gauge):
                child.set(value)
                continue
            grown = value - (before or 0.0)
            if grown > 0:
                child.inc(grown)

    def restarted(self) -> None:
        """The child was made anew: its next reports count from zero."""
        self._last.clear()
