"""The Prometheus exposition sink: the latest closed window of every series identity this worker
sees, as gauges on the worker's /metrics (a prometheus_client custom collector).

Series: `vigil_window_<aggregate>{subject, name, metric, window}` (the names remote-write uses),
without timestamps: a scrape shows the newest closed window's values. Bounded:
- at most `max_series` series; a window of an identity not shown yet that would go past it is cut
  (its series counted in vigil_sink_series_cut, each time such a window closes);
- stale series go: an identity whose newest window is `stale_windows` windows (of its size) older
  than the newest window of that size on this worker (the identity stopped reporting, or its
  `metrics` partition moved to another worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from app.sinks.remote_write import SERIES_PREFIX
from app.sinks.windows import AGGREGATES, ClosedWindow

__all__ = ["LatestWindows"]

_LABELS = ("subject", "name", "metric", "window")
_HELP = {"count": "events", "sum": "sum of the values", "min": "smallest value", "max": "largest value",
         "mean": "mean value", "last": "last value", "p50": "median", "p95": "95th percentile",
         "p99": "99th percentile"}

Key = tuple[str, str, str, int]


class LatestWindows:
    """The latest closed window per identity (subject, name, metric, window size), capped.
    `update` runs on the worker's thread, `collect` on the HTTP server's: a lock keeps them apart
    (held for dictionary updates only)."""

    def __init__(self, *, max_series: int, stale_windows: int, on_cut: Callable[[int], None],
                 on_size: Callable[[int], None] | None = None) -> None:
        self.max_series = max_series
        self.stale_windows = stale_windows
        self.on_cut = on_cut
        self.on_size = on_size
        self._lock = threading.Lock()
        self._latest: dict[Key, ClosedWindow] = {}
        #: newest window end seen per window size (ms)
        self._newest_end: dict[int, int] = {}
        self.series = 0

    def update(self, windows: list[ClosedWindow]) -> None:
        """Take closed windows (a newer window of an identity replaces the older one)."""
        cut = 0
        pruned = False
        with self._lock:
            latest, newest = self._latest, self._newest_end
            for w in windows:
                if w.end_ms > newest.get(w.size_ms, 0):
                    newest[w.size_ms] = w.end_ms
                key = (w.subject, w.name, w.metric, w.size_ms)
                old = latest.get(key)
                if old is not None:
                    if w.end_ms >= old.end_ms:
                        latest[key] = w
                        self.series += len(w.values) - len(old.values)
                    continue
                if self.series + len(w.values) > self.max_series and not pruned:
                    self._prune()
                    pruned = True
                if self.series + len(w.values) > self.max_series:
                    cut += len(w.values)
                    continue
                latest[key] = w
                self.series += len(w.values)
        if cut:
            self.on_cut(cut)

    def _prune(self) -> None:
        """Forget stale identities (under the lock)."""
        horizon = {size: end - self.stale_windows * size for size, end in self._newest_end.items()}
        stale = [key for key, w in self._latest.items() if w.end_ms <= horizon[w.size_ms]]
        for key in stale:
            self.series -= len(self._latest.pop(key).values)

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the families depend on what was seen

    def collect(self) -> Iterator[Metric]:
        """The families for a scrape (stale identities dropped first)."""
        with self._lock:
            self._prune()
            windows = list(self._latest.values())
            if self.on_size is not None:
                self.on_size(self.series)
        families = {agg: GaugeMetricFamily(SERIES_PREFIX + agg, f"Vigil closed windows: {_HELP[agg]} in the "
                                           "latest closed window", labels=_LABELS) for agg in AGGREGATES}
        for w in windows:
            labels = [w.subject, w.name, w.metric, w.window]
            for aggregate, value in w.values:
                families[aggregate].add_metric(labels, value)
        yield from (f for f in families.values() if f.samples)
