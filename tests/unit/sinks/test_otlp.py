"""The OTLP encoder, decoded with the opentelemetry-proto message classes."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from app.sinks.otlp import OtlpEncoder, attribute_bytes, is_retriable_status
from tests.unit.sinks.conftest import window


def _decode(body: bytes) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    return request


def _attributes(point) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def test_encode__one_metric_per_aggregate_sums_for_count_and_sum_gauges_for_the_rest() -> None:
    windows = [window("web1", start_ms=1_000_000, value=2.0), window("web2.example.com", "disk:/", "used",
                                                                       start_ms=1_000_000, size_ms=60_000, value=5.0)]
    payload = OtlpEncoder(service_name="vigil-test").encode(windows)
    request = _decode(payload.body)
    [resource_metrics] = request.resource_metrics
    assert {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes} == \
        {"service.name": "vigil-test"}
    [scope_metrics] = resource_metrics.scope_metrics
    assert scope_metrics.scope.name == "vigil.sinks"
    metrics = {m.name: m for m in scope_metrics.metrics}
    assert sorted(metrics) == sorted(f"vigil.window.{a}" for a in
                                     ("count", "sum", "min", "max", "mean", "last", "p50", "p95", "p99"))
    count = metrics["vigil.window.count"]
    assert count.WhichOneof("data") == "sum" and count.sum.is_monotonic
    assert count.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    assert not metrics["vigil.window.sum"].sum.is_monotonic
    mean = metrics["vigil.window.mean"]
    assert mean.WhichOneof("data") == "gauge"
    points = sorted(mean.gauge.data_points, key=lambda p: p.as_double)
    assert [_attributes(p) for p in points] == [
        {"subject": "web1", "name": "load", "metric": "load1", "window": "10s"},
        {"subject": "web2.example.com", "name": "disk:/", "metric": "used", "window": "1m"}]
    assert [(p.start_time_unix_nano, p.time_unix_nano, p.as_double) for p in points] == [
        (1_000_000_000_000, 1_010_000_000_000, 2.0), (1_000_000_000_000, 1_060_000_000_000, 5.0)]
    assert [p.as_double for p in count.sum.data_points] == [3.0, 3.0]
    assert payload.samples == 18


def test_retries_follow_the_otlp_http_specification() -> None:
    assert [s for s in (400, 404, 413, 429, 500, 501, 502, 503, 504) if is_retriable_status(s)] == \
        [429, 502, 503, 504]


def test_encode__points_of_one_identity_across_windows_and_batches_decode_exactly() -> None:
    # a data point's framing is made once per identity: later windows and batches reuse it
    encoder = OtlpEncoder()
    for batch in range(2):
        windows = [window(f"h{i % 2}", start_ms=(batch * 3 + i) * 10_000, value=float(i)) for i in range(3)]
        request = _decode(encoder.encode(windows).body)
        metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
        for name, points in (("vigil.window.last", metrics["vigil.window.last"].gauge.data_points),
                             ("vigil.window.count", metrics["vigil.window.count"].sum.data_points)):
            assert [(_attributes(p)["subject"], p.start_time_unix_nano, p.time_unix_nano) for p in points] == [
                (f"h{i % 2}", (batch * 3 + i) * 10_000_000_000, ((batch * 3 + i) * 10_000 + 10_000) * 1_000_000)
                for i in range(3)], name
        assert [p.as_double for p in metrics["vigil.window.last"].gauge.data_points] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("key", "value"), [("subject", "web1"), ("window", ""), ("", "x"), ("", ""),
                                            ("subject", "h\u00e9t\u00e9-\u4e2d"), ("subject", "x" * 300)])
def test_attribute_bytes__as_the_message_classes_write_it(key: str, value: str) -> None:
    assert attribute_bytes(key, value) == KeyValue(key=key, value=AnyValue(string_value=value)).SerializeToString()
