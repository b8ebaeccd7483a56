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

from functools import lru_cache
from typing import Final

import cramjam

from app.sinks.http import HttpTransport
from app.sinks.prompb.remote_pb2 import Label, Sample, TimeSeries, WriteRequest
from app.sinks.types import Payload
from app.sinks.windows import AGGREGATES, COMMON_FIELD_VALUES, ClosedWindow, IdentityMemo
from app.sinks.wire import DOUBLE as _DOUBLE
from app.sinks.wire import LEN as _LEN
from app.sinks.wire import embedded, field_number, int64, varint

__all__ = ["HEADERS", "SERIES_PREFIX", "RemoteWriteEncoder", "is_retriable_status", "label_bytes",
           "remote_write_transport"]

#: Series names are this plus the aggregate: vigil_window_mean, vigil_window_p95, ...
SERIES_PREFIX: Final = "vigil_window_"
HEADERS: Final = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                  "User-Agent": "vigil-sinks/1", "X-Prometheus-Remote-Write-Version": "0.1.0"}
_WR_TIMESERIES: Final = field_number(WriteRequest, "timeseries")
_TS_LABELS: Final = field_number(TimeSeries, "labels")
_TS_SAMPLES: Final = field_number(TimeSeries, "samples")
_LABEL_NAME: Final = field_number(Label, "name")
_LABEL_VALUE: Final = field_number(Label, "value")
_SAMPLE_VALUE: Final = field_number(Sample, "value")
_SAMPLE_TIMESTAMP: Final = field_number(Sample, "timestamp")
_DOUBLE_LEN: Final = _DOUBLE.size
#: the tag of Sample.value (a 64-bit field)
_VALUE_TAG: Final = varint(_SAMPLE_VALUE << 3 | 1)
#: the tag of a WriteRequest.timeseries element
_SERIES_TAG: Final = varint(_WR_TIMESERIES << 3 | _LEN)


def is_retriable_status(status: int) -> bool:
    """Remote-write 1.0: retry on 5xx (MUST) and 429 (MAY); never on other 4xx."""
    return status >= 500 or status == 429


class RemoteWriteEncoder:
    """Closed windows -> snappy(WriteRequest). Everything of a sample's TimeSeries but its value
    and timestamp is serialised once per identity and aggregate (the `__name__` label with the
    message classes, the identity's labels, and the framing around them, whose lengths are fixed
    once the timestamp's length is known); a sample then costs its packed value and the window's
    timestamp bytes. See app.sinks.wire."""

    def __init__(self) -> None:
        self._names = {agg: embedded(_TS_LABELS, label_bytes("__name__", SERIES_PREFIX + agg)) for agg in AGGREGATES}
        #: per length of the timestamp field: identity -> aggregate -> bytes before the sample's value
        self._heads: dict[int, IdentityMemo[dict[str, bytes]]] = {}

    def _memo(self, at_len: int) -> IdentityMemo[dict[str, bytes]]:
        memo = self._heads.get(at_len)
        if memo is None:
            memo = self._heads[at_len] = IdentityMemo(lambda w: self._series_heads(w, at_len))
        return memo

    def _series_heads(self, w: ClosedWindow, at_len: int) -> dict[str, bytes]:
        """Aggregate -> the serialised TimeSeries element up to its sample's value, for a sample
        whose timestamp field is `at_len` bytes (the same for decades of millisecond times)."""
        sample_len = 1 + _DOUBLE_LEN + at_len  # value tag + value + timestamp field
        # every aggregate's series: its name label, then these (the same for all of them)
        rest = _identity_labels(w) + varint(_TS_SAMPLES << 3 | _LEN) + varint(sample_len) + _VALUE_TAG
        rest_len = len(rest) + _DOUBLE_LEN + at_len
        return {agg: _SERIES_TAG + varint(len(name) + rest_len) + name + rest for agg, name in self._names.items()}

    def encode(self, windows: list[ClosedWindow]) -> Payload:
        parts: list[bytes] = []
        append = parts.append
        samples = 0
        pack = _DOUBLE.pack
        for w in windows:
            at = int64(_SAMPLE_TIMESTAMP, w.end_ms)
            heads = self._memo(len(at)).get(w)
            for aggregate, value in w.values:
                append(heads[aggregate])
                append(pack(value))
                append(at)
            samples += len(w.values)
        return Payload(bytes(cramjam.snappy.compress_raw(b"".join(parts))), samples)


def label_bytes(name: str, value: str) -> bytes:
    """A Label as `Label(name=..., value=...).SerializeToString()` writes it (proto3: an empty string
    is left out), without a message object: it is made for every identity's first window."""
    out = embedded(_LABEL_NAME, name.encode()) if name else b""
    return out + embedded(_LABEL_VALUE, value.encode()) if value else out


def _label(name: str, value: str) -> bytes:
    """A TimeSeries.labels element."""
    return embedded(_TS_LABELS, label_bytes(name, value))


#: the same label of the few names, metrics and window sizes, made once (not per identity)
_common_label = lru_cache(maxsize=COMMON_FIELD_VALUES)(_label)


def _identity_labels(w: ClosedWindow) -> bytes:
    """The identity's labels as TimeSeries.labels elements, sorted by name after `__name__`."""
    return (_common_label("metric", w.metric) + _common_label("name", w.name) + _label("subject", w.subject)
            + _common_label("window", w.window))


def remote_write_transport(url: str, *, timeout_s: float, auth: tuple[str, str] | None,
                           headers: dict[str, str]) -> HttpTransport:
    """The HTTP transport of a remote-write sink."""
    return HttpTransport(url, headers={**HEADERS, **headers}, timeout_s=timeout_s,
                         retriable_status=is_retriable_status, auth=auth)
