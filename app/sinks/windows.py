"""What every sink takes: one closed window of one metric of one identity (a `vigil.WindowAggregate`
record from the `metrics` topic), and its values per aggregate. Pure; no I/O.

Every sink shows the same identity (subject, name, metric, window size) and the same aggregates,
so a series found in Graphite can be found by the same names in Prometheus or an OTLP backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Generic, TypeVar

from app.durations import format_duration_ms

__all__ = ["AGGREGATES", "COMMON_FIELD_VALUES", "WINDOW_RECORD", "ClosedWindow", "IdentityMemo", "NotAWindow",
           "window_label"]

T = TypeVar("T")

#: The Avro record the pipeline publishes on `metrics` for every closed window (app.pipeline.tracker).
WINDOW_RECORD: Final = "vigil.WindowAggregate"
#: The aggregates a window carries, in the order sinks emit them; the quantiles may be absent.
AGGREGATES: Final = ("count", "sum", "min", "max", "mean", "last", "p50", "p95", "p99")
#: How many values of an identity's name, metric or window size an encoder keeps encoded: there are
#: few of them (check names, metric names, window sizes), shared by thousands of subjects, so what
#: an encoder makes of them is made once, not once per identity (subjects are not kept this way).
COMMON_FIELD_VALUES: Final = 4096


class NotAWindow(ValueError):
    """A record on `metrics` that is not a closed window (the message says which field is wrong)."""


@lru_cache(maxsize=64)
def window_label(size_ms: int) -> str:
    """The window size as people write it: 10000 -> "10s", 60000 -> "1m"."""
    return format_duration_ms(size_ms)


@dataclass(slots=True)
class ClosedWindow:
    """One closed window: identity, [start_ms, end_ms), and (aggregate, value) pairs in AGGREGATES order.
    Not changed once made (not frozen only because a frozen dataclass is slower to make, and one is
    made per window on the worker's thread)."""

    subject: str
    name: str
    metric: str
    size_ms: int
    start_ms: int
    end_ms: int
    values: tuple[tuple[str, float], ...]

    @property
    def window(self) -> str:
        return window_label(self.size_ms)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ClosedWindow:
        """From a decoded WindowAggregate; NotAWindow when a field is missing or of the wrong type."""
        try:
            subject, name, metric = record["subject"], record["name"], record["metric"]
            start_ms, end_ms, size_ms = record["window_start"], record["window_end"], record["size_ms"]
            get = record.get
            values = tuple([(agg, float(v)) for agg in AGGREGATES if (v := get(agg)) is not None])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotAWindow(f"not a {WINDOW_RECORD}: {type(exc).__name__}: {exc}") from None
        # exact types (what the Avro decoder gives), cheaper than isinstance once per window
        if not (type(subject) is str and type(name) is str and type(metric) is str):
            raise NotAWindow(f"not a {WINDOW_RECORD}: subject, name and metric must be strings")
        if not (type(start_ms) is int and type(end_ms) is int and type(size_ms) is int and size_ms > 0):
            raise NotAWindow(f"not a {WINDOW_RECORD}: window_start, window_end and size_ms must be integers")
        return cls(subject, name, metric, size_ms, start_ms, end_ms, values)

    @property
    def sample_count(self) -> int:
        """Samples this window makes in a sink: one per aggregate present."""
        return len(self.values)


class IdentityMemo(Generic[T]):
    """What an encoder derives from a window's identity alone (its labels, attributes or paths),
    made once per identity: the same identities close a window again and again. Forgotten all at
    once past `max_entries`, which bounds the memory and costs one rebuild per identity."""

    def __init__(self, build: Callable[[ClosedWindow], T], *, max_entries: int = 100_000) -> None:
        self.build = build
        self.max_entries = max_entries
        self._memo: dict[tuple[str, str, str, int], T] = {}

    def get(self, window: ClosedWindow) -> T:
        key = (window.subject, window.name, window.metric, window.size_ms)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            found = self._memo[key] = self.build(window)
        return found
