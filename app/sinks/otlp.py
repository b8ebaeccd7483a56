"""OpenTelemetry metrics over OTLP/HTTP: closed windows as a protobuf ExportMetricsServiceRequest
POSTed to `<endpoint>/v1/metrics` (message classes: the `opentelemetry-proto` package).

One request holds one ResourceMetrics (resource attribute `service.name`, default "vigil"), one
ScopeMetrics (scope "vigil.sinks") and one Metric per aggregate, `vigil.window.<aggregate>`, whose
data points carry the identity as attributes `subject`, `name`, `metric`, `window` and span the
window: start_time = window start, time = window end. `count` and `sum` are what happened within
the window, so they are delta Sums (count monotonic); the others (min, max, mean, last, p50, p95,
p99) are Gauges.

Retries follow the OTLP/HTTP specification: 429, 502, 503 and 504 are retried, any other error
status is not (counted as rejected).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from app.sinks.http import HttpTransport
from app.sinks.types import Payload
from app.sinks.windows import AGGREGATES, COMMON_FIELD_VALUES, ClosedWindow, IdentityMemo
from app.sinks.wire import DOUBLE, LEN, embedded, field_number, fixed64, varint

__all__ = ["METRICS_PATH", "METRIC_PREFIX", "OtlpEncoder", "attribute_bytes", "is_retriable_status", "otlp_transport"]

METRIC_PREFIX: Final = "vigil.window."
METRICS_PATH: Final = "/v1/metrics"
SCOPE: Final = "vigil.sinks"
#: Aggregates sent as delta Sums (value: is_monotonic); the rest are Gauges.
_SUMS: Final = {"count": True, "sum": False}
_RETRIABLE: Final = frozenset({429, 502, 503, 504})

_REQUEST_RESOURCE_METRICS: Final = field_number(ExportMetricsServiceRequest, "resource_metrics")
_RM_SCOPE_METRICS: Final = field_number(ResourceMetrics, "scope_metrics")
_SM_METRICS: Final = field_number(ScopeMetrics, "metrics")
_METRIC_GAUGE: Final = field_number(Metric, "gauge")
_METRIC_SUM: Final = field_number(Metric, "sum")
_GAUGE_POINTS: Final = field_number(Gauge, "data_points")
_SUM_POINTS: Final = field_number(Sum, "data_points")
_DP_ATTRIBUTES: Final = field_number(NumberDataPoint, "attributes")
_KV_KEY: Final = field_number(KeyValue, "key")
_KV_VALUE: Final = field_number(KeyValue, "value")
_ANY_STRING: Final = field_number(AnyValue, "string_value")
_DP_START: Final = field_number(NumberDataPoint, "start_time_unix_nano")
_DP_TIME: Final = field_number(NumberDataPoint, "time_unix_nano")
_DP_VALUE: Final = field_number(NumberDataPoint, "as_double")
#: the tag of NumberDataPoint.as_double (a 64-bit field)
_VALUE_TAG: Final = varint(_DP_VALUE << 3 | 1)
#: the bytes of a data point besides its attributes: two fixed64 times and a double
_POINT_FIXED_LEN: Final = len(fixed64(_DP_START, 0)) + len(fixed64(_DP_TIME, 0)) + len(_VALUE_TAG) + DOUBLE.size


def is_retriable_status(status: int) -> bool:
    """OTLP/HTTP: 429, 502, 503 and 504 may be retried; other errors must not be."""
    return status in _RETRIABLE


def attribute_bytes(key: str, value: str) -> bytes:
    """A string KeyValue as `KeyValue(key=..., value=AnyValue(string_value=...)).SerializeToString()`
    writes it, without message objects (made for every identity's first window): proto3 leaves an
    empty key out; `string_value` is in a oneof, so it is written even when empty."""
    key_field = embedded(_KV_KEY, key.encode()) if key else b""
    return key_field + embedded(_KV_VALUE, embedded(_ANY_STRING, value.encode()))


def _attribute(key: str, value: str) -> bytes:
    return embedded(_DP_ATTRIBUTES, attribute_bytes(key, value))


#: the same attribute of the few names, metrics and window sizes, made once (not per identity)
_common_attribute = lru_cache(maxsize=COMMON_FIELD_VALUES)(_attribute)


def _identity_attributes(w: ClosedWindow) -> bytes:
    return (_attribute("subject", w.subject) + _common_attribute("name", w.name)
            + _common_attribute("metric", w.metric) + _common_attribute("window", w.window))


#: aggregate -> the tag of its data point element (a Sum's or a Gauge's `data_points`)
_POINT_TAGS: Final = {agg: varint((_SUM_POINTS if agg in _SUMS else _GAUGE_POINTS) << 3 | LEN) for agg in AGGREGATES}


def _point_heads(w: ClosedWindow) -> dict[str, bytes]:
    """Aggregate -> the start of its data point element: the Sum's or Gauge's `data_points` tag,
    the point's length (attributes, two fixed64 times and a double) and the identity's attributes."""
    attributes = _identity_attributes(w)
    rest = varint(len(attributes) + _POINT_FIXED_LEN) + attributes
    return {agg: tag + rest for agg, tag in _POINT_TAGS.items()}


class OtlpEncoder:
    """Closed windows -> ExportMetricsServiceRequest bytes. Attributes are serialised once per
    identity (with the framing of its data points, whose length they fix) and the outer messages
    once, with the message classes; see app.sinks.wire."""

    def __init__(self, *, service_name: str = "vigil") -> None:
        resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service_name))])
        self._resource_metrics = ResourceMetrics(resource=resource).SerializeToString()
        self._scope_metrics = ScopeMetrics(scope=InstrumentationScope(name=SCOPE)).SerializeToString()
        self._metric_heads = {agg: Metric(name=METRIC_PREFIX + agg).SerializeToString() for agg in AGGREGATES}
        self._sum_tails = {agg: Sum(aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                                    is_monotonic=monotonic).SerializeToString() for agg, monotonic in _SUMS.items()}
        #: identity -> aggregate -> a data point element of that aggregate's Gauge or Sum up to its
        #: attributes (tag, length, attributes: a point's length is fixed by its identity)
        self._point_heads: IdentityMemo[dict[str, bytes]] = IdentityMemo(_point_heads)

    def encode(self, windows: list[ClosedWindow]) -> Payload:
        points: dict[str, list[bytes]] = {}
        samples = 0
        pack = DOUBLE.pack
        for w in windows:
            heads = self._point_heads.get(w)
            times = fixed64(_DP_START, w.start_ms * 1_000_000) + fixed64(_DP_TIME, w.end_ms * 1_000_000) + _VALUE_TAG
            for aggregate, value in w.values:
                found = points.get(aggregate)
                if found is None:
                    found = points[aggregate] = []
                found += (heads[aggregate], times, pack(value))
            samples += len(w.values)
        metrics = []
        for aggregate, found in points.items():
            tail = self._sum_tails.get(aggregate)
            if tail is None:
                body = embedded(_METRIC_GAUGE, b"".join(found))
            else:
                body = embedded(_METRIC_SUM, b"".join(found) + tail)
            metrics.append(embedded(_SM_METRICS, self._metric_heads[aggregate] + body))
        scope_metrics = embedded(_RM_SCOPE_METRICS, self._scope_metrics + b"".join(metrics))
        return Payload(embedded(_REQUEST_RESOURCE_METRICS, self._resource_metrics + scope_metrics), samples)


def otlp_transport(endpoint: str, *, timeout_s: float, headers: dict[str, str]) -> HttpTransport:
    """The HTTP transport of an OTLP sink (POST <endpoint>/v1/metrics)."""
    return HttpTransport(endpoint + METRICS_PATH,
                         headers={"Content-Type": "application/x-protobuf", "User-Agent": "vigil-sinks/1", **headers},
                         timeout_s=timeout_s, retriable_status=is_retriable_status)
