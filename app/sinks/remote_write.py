"""Prometheus remote-write 1.0: closed windows as a snappy-compressed protobuf WriteRequest
(https://prometheus.io/docs/specs/remote_write_spec/; message classes generated from the
specification's messages, app/sinks/prompb/remote.proto).

Each aggregate of a window is one series `vigil_window_<aggregate>` with the labels `metric`,
`name`, `subject` and `window` (sorted by name, as the specification requires) and one sample at
the window's END (when its value became known), e.g.
`vigil_window_mean{metric="load1",name="load",subject="web1",window="10s"} 0.42 @<end ms>`.

Retries follow the specification: 5xx and 429 are sent again, any other 4xx is not (the receiver
will refuse the same data again: counted as rejected).
"""

from __future__ import annotations

from typing import Final

import cramjam

from app.sinks.http import HttpTransport
from app.sinks.prompb.remote_pb2 import Label, Sample, TimeSeries, WriteRequest
from app.sinks.types import Payload
from app.sinks.windows import AGGREGATES, ClosedWindow, IdentityMemo
from app.sinks.wire import double, embedded, field_number, int64

__all__ = ["HEADERS", "SERIES_PREFIX", "RemoteWriteEncoder", "is_retriable_status", "remote_write_transport"]

#: Series names are this plus the aggregate: vigil_window_mean, vigil_window_p95, ...
SERIES_PREFIX: Final = "vigil_window_"
HEADERS: Final = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                  "User-Agent": "vigil-sinks/1", "X-Prometheus-Remote-Write-Version": "0.1.0"}
_WR_TIMESERIES: Final = field_number(WriteRequest, "timeseries")
_TS_LABELS: Final = field_number(TimeSeries, "labels")
_TS_SAMPLES: Final = field_number(TimeSeries, "samples")
_SAMPLE_VALUE: Final = field_number(Sample, "value")
_SAMPLE_TIMESTAMP: Final = field_number(Sample, "timestamp")


def is_retriable_status(status: int) -> bool:
    """Remote-write 1.0: retry on 5xx (MUST) and 429 (MAY); never on other 4xx."""
    return status >= 500 or status == 429


class RemoteWriteEncoder:
    """Closed windows -> snappy(WriteRequest). Labels are serialised once per identity (and the
    `__name__` label once per aggregate) with the message classes; see app.sinks.wire."""

    def __init__(self) -> None:
        self._names = {agg: embedded(_TS_LABELS, Label(name="__name__", value=SERIES_PREFIX + agg).SerializeToString())
                       for agg in AGGREGATES}
        self._labels: IdentityMemo[bytes] = IdentityMemo(_identity_labels)

    def encode(self, windows: list[ClosedWindow]) -> Payload:
        parts: list[bytes] = []
        samples = 0
        names = self._names
        for w in windows:
            labels = self._labels.get(w)
            at = int64(_SAMPLE_TIMESTAMP, w.end_ms)
            for aggregate, value in w.values:
                series = names[aggregate] + labels + embedded(_TS_SAMPLES, double(_SAMPLE_VALUE, value) + at)
                parts.append(embedded(_WR_TIMESERIES, series))
            samples += len(w.values)
        return Payload(bytes(cramjam.snappy.compress_raw(b"".join(parts))), samples)


def _identity_labels(w: ClosedWindow) -> bytes:
    """The identity's labels as TimeSeries.labels elements, sorted by name after `__name__`."""
    return b"".join(embedded(_TS_LABELS, Label(name=k, value=v).SerializeToString()) for k, v in
                    (("metric", w.metric), ("name", w.name), ("subject", w.subject), ("window", w.window)))


def remote_write_transport(url: str, *, timeout_s: float, auth: tuple[str, str] | None,
                           headers: dict[str, str]) -> HttpTransport:
    """The HTTP transport of a remote-write sink."""
    return HttpTransport(url, headers={**HEADERS, **headers}, timeout_s=timeout_s,
                         retriable_status=is_retriable_status, auth=auth)
