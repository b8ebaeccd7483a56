"""Counts of the compiled Avro codec's fallbacks to fastavro (app.model.serde), for /metrics.

A decline (`app.model.avro_plan.Declined`) is by design: the body or value is one only fastavro
handles exactly (a corrupt body, a bool where an int is expected); it is counted per direction and
reason. Any other exception from the compiled reader or writer is a bug in it: the record is still
decoded or encoded by fastavro (a bug must not lose data), but it is counted apart, per direction,
schema and exception type, and logged at ERROR once per direction and schema, so a bug does not
hide as a silent slow path.

Nothing here runs when the compiled codec succeeds: the serde calls in only on a fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # prometheus_client is imported when scraped, not by every process that decodes
    from prometheus_client.metrics_core import Metric

__all__ = ["BUG_METRIC", "COMPILED_METRIC", "FALLBACK_METRIC", "CodecStats", "CodecStatsCollector", "Sample"]

log = logging.getLogger("app.model.serde")

#: Records the compiled codec declined and fastavro handled, by direction ("decode"/"encode") and reason.
FALLBACK_METRIC: Final = "vigil_serde_fastavro_fallbacks"
#: Records on which the compiled codec failed with anything but a decline (a bug), by direction,
#: schema and exception type; fastavro handled them.
BUG_METRIC: Final = "vigil_serde_codec_bugs"
#: 1 when the compiled reader / writer is in use (0: everything goes through fastavro), by codec.
COMPILED_METRIC: Final = "vigil_serde_compiled"

#: (metric sample name, labels, value), as Prometheus exposes it (counters end in `_total`).
Sample = tuple[str, dict[str, str], float]


class CodecStats:
    """Fallback and bug counters of one AvroSerde (thread-safe; touched only on fallbacks)."""

    def __init__(self, *, compiled_reader: bool, compiled_writer: bool) -> None:
        self.compiled_reader = compiled_reader
        self.compiled_writer = compiled_writer
        self._fallbacks: dict[tuple[str, str], int] = {}
        self._bugs: dict[tuple[str, str, str], int] = {}
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def declined(self, direction: str, exc: BaseException) -> None:
        """The compiled codec declined a record (`exc` is its Declined); fastavro takes it."""
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
        key = (direction, reason)
        with self._lock:
            self._fallbacks[key] = self._fallbacks.get(key, 0) + 1

    def bug(self, direction: str, schema: str, exc: BaseException) -> None:
        """The compiled codec failed on a `schema` record with something other than a decline: a
        bug. Counted; logged at ERROR with the traceback the first time per direction and schema."""
        key = (direction, schema, type(exc).__name__)
        with self._lock:
            self._bugs[key] = self._bugs.get(key, 0) + 1
            first = (direction, schema) not in self._logged
            self._logged.add((direction, schema))
        if first:
            log.error("the compiled Avro codec failed to %s a %s record with %s: %s. This is a bug in "
                      "app.model.avro_%s (please report it); fastavro handles such records instead, more "
                      "slowly. Counted in %s_total; logged once per schema.", direction, schema,
                      type(exc).__name__, exc, "reader" if direction == "decode" else "writer", BUG_METRIC,
                      exc_info=exc)

    def fallbacks(self) -> dict[tuple[str, str], int]:
        """Declines so far by (direction, reason)."""
        with self._lock:
            return dict(self._fallbacks)

    def bugs(self) -> dict[tuple[str, str, str], int]:
        """Bugs so far by (direction, schema, exception type)."""
        with self._lock:
            return dict(self._bugs)

    def samples(self) -> list[Sample]:
        """Every counter and the compiled flags as (name, labels, value), Prometheus-style."""
        out: list[Sample] = [
            (COMPILED_METRIC, {"codec": "reader"}, float(self.compiled_reader)),
            (COMPILED_METRIC, {"codec": "writer"}, float(self.compiled_writer)),
        ]
        out += [(f"{FALLBACK_METRIC}_total", {"direction": d, "reason": r}, float(n))
                for (d, r), n in sorted(self.fallbacks().items())]
        out += [(f"{BUG_METRIC}_total", {"direction": d, "schema": s, "error": e}, float(n))
                for (d, s, e), n in sorted(self.bugs().items())]
        return out

    def collector(self) -> CodecStatsCollector:
        """A prometheus_client collector of these counters (`registry.register(stats.collector())`)."""
        return CodecStatsCollector(self)


class CodecStatsCollector:
    """Exposes a CodecStats through prometheus_client (a custom collector, read at scrape time;
    prometheus_client's Collector protocol)."""

    def __init__(self, stats: CodecStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        compiled = GaugeMetricFamily(COMPILED_METRIC, "1 when the compiled Avro codec is in use, by codec",
                                     labels=["codec"])
        fallbacks = CounterMetricFamily(FALLBACK_METRIC, "Records the compiled Avro codec declined and "
                                        "fastavro handled, by direction and reason", labels=["direction", "reason"])
        bugs = CounterMetricFamily(BUG_METRIC, "Records on which the compiled Avro codec failed (a bug; "
                                   "fastavro handled them), by direction, schema and error",
                                   labels=["direction", "schema", "error"])
        for name, labels, value in self.stats.samples():
            family = compiled if name == COMPILED_METRIC else fallbacks if name.startswith(FALLBACK_METRIC) else bugs
            family.add_metric(list(labels.values()), value)
        yield compiled
        yield fallbacks
        yield bugs
