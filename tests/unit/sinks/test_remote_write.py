"""The remote-write encoder, decoded with the reference decoders: snappy (cramjam's block format,
as the specification requires) and the WriteRequest message class."""

from __future__ import annotations

import cramjam
import pytest

from app.sinks.prompb.remote_pb2 import Label, Sample, TimeSeries, WriteRequest
from app.sinks.remote_write import HEADERS, RemoteWriteEncoder, is_retriable_status, label_bytes
from app.sinks.windows import AGGREGATES
from tests.unit.sinks.conftest import window


def _decode(body: bytes) -> WriteRequest:
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


def test_encode__one_series_per_aggregate_with_sorted_identity_labels_and_the_window_end() -> None:
    w = window("db1.example.com", "disk:/", "used pct", start_ms=1_700_000_000_000, value=97.25)
    payload = RemoteWriteEncoder().encode([w])
    request = _decode(payload.body)
    assert payload.samples == len(request.timeseries) == len(AGGREGATES)
    identity = [Label(name="metric", value="used pct"), Label(name="name", value="disk:/"),
                Label(name="subject", value="db1.example.com"), Label(name="window", value="10s")]
    expected = WriteRequest(timeseries=[
        TimeSeries(labels=[Label(name="__name__", value=f"vigil_window_{agg}"), *identity],
                   samples=[Sample(value=value, timestamp=1_700_000_010_000)]) for agg, value in w.values])
    assert request == expected
    for series in request.timeseries:
        names = [label.name for label in series.labels]
        assert names == sorted(names)  # the specification: labels sorted by name


def test_encode__many_windows_and_identities_reuse_nothing_wrongly() -> None:
    windows = [window(f"web{i % 3}", start_ms=10_000 * (i // 3), value=float(i)) for i in range(9)]
    request = _decode(RemoteWriteEncoder().encode(windows).body)
    seen = {(dict((lb.name, lb.value) for lb in ts.labels)["subject"], ts.samples[0].timestamp,
             ts.samples[0].value) for ts in request.timeseries
            if ts.labels[0].value == "vigil_window_last"}
    assert seen == {(f"web{i % 3}", 10_000 * (i // 3) + 10_000, float(i)) for i in range(9)}


def test_encode__negative_and_special_values_round_trip() -> None:
    request = _decode(RemoteWriteEncoder().encode([window(value=-0.5, start_ms=-20_000)]).body)
    assert {ts.samples[0].value for ts in request.timeseries} == {-0.5, -1.5, 3.0}
    assert {ts.samples[0].timestamp for ts in request.timeseries} == {-10_000}


def test_protocol_headers_and_retries_follow_the_specification() -> None:
    assert HEADERS["Content-Encoding"] == "snappy"
    assert HEADERS["Content-Type"] == "application/x-protobuf"
    assert HEADERS["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert [s for s in (400, 401, 404, 408, 413, 429, 500, 502, 503) if is_retriable_status(s)] == \
        [429, 500, 502, 503]


def test_encode__an_identity_seen_with_timestamps_of_other_lengths_is_framed_for_each() -> None:
    # the framing made once per identity depends on the timestamp field's length: a window whose
    # end takes fewer (or more) varint bytes than the identity's last one must still decode exactly
    encoder = RemoteWriteEncoder()
    ends = [1_700_000_010_000, 10_000, 1_700_000_020_000, -10_000, 100]
    for end in ends:
        request = _decode(encoder.encode([window("web1", start_ms=end - 10_000, value=float(end))]).body)
        assert {(ts.samples[0].timestamp, ts.samples[0].value) for ts in request.timeseries
                if ts.labels[0].value == "vigil_window_last"} == {(end, float(end))}
        assert all(len(ts.samples) == 1 and len(ts.labels) == 5 for ts in request.timeseries)


@pytest.mark.parametrize(("name", "value"), [("subject", "web1"), ("window", ""), ("", "x"), ("", ""),
                                             ("subject", "h\u00e9t\u00e9-\u4e2d"), ("subject", "x" * 300)])
def test_label_bytes__as_the_message_class_writes_it(name: str, value: str) -> None:
    assert label_bytes(name, value) == Label(name=name, value=value).SerializeToString()
