"""How a restore splits a consumer batch of changelog records by partition
(app.runtime.worker.restore.split_by_partition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from app.runtime.worker.restore import split_by_partition


@dataclass
class _Error:
    code_: int

    def code(self) -> int:
        return self.code_

    def str(self) -> str:
        return f"error {self.code_}"


@dataclass
class _Msg:
    """What the restore reads of a confluent_kafka.Message."""

    topic_: str
    partition_: int
    offset_: int
    key_: bytes | None = None
    value_: bytes | None = None
    error_: _Error | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def error(self) -> _Error | None:
        return self.error_


def _eof(topic: str, partition: int, offset: int) -> _Msg:
    return _Msg(topic, partition, offset, error_=_Error(KafkaError._PARTITION_EOF))


def test_records_per_partition_in_order_with_each_partitions_last_offset() -> None:
    """Runs of partitions interleave (a partition may come back later in the batch, and two topics
    share partition numbers); tombstones (None) stay records; EOF events are no records."""
    msgs: list[Any] = [
        _Msg("a", 0, 10, b"k1", b"v1"), _Msg("a", 0, 11, b"k2", None),
        _Msg("b", 0, 5, b"x", b"1"),
        _Msg("a", 1, 3, b"k3", b"v3"),
        _Msg("a", 0, 12, b"k1", b"v1'"),
        _eof("a", 0, 13),
        _Msg("b", 0, 6, b"y", b"2"),
    ]
    eof: set[tuple[str, int]] = set()
    assert split_by_partition(msgs, eof) == {
        ("a", 0): ([(b"k1", b"v1"), (b"k2", None), (b"k1", b"v1'")], 12),
        ("b", 0): ([(b"x", b"1"), (b"y", b"2")], 6),
        ("a", 1): ([(b"k3", b"v3")], 3),
    }
    assert eof == {("a", 0)}


def test_nothing_but_events__no_records_and_other_errors_are_skipped() -> None:
    eof: set[tuple[str, int]] = set()
    msgs: list[Any] = [_eof("a", 2, 0), _Msg("a", 3, -1, error_=_Error(KafkaError._TRANSPORT))]
    assert split_by_partition(msgs, eof) == {}
    assert eof == {("a", 2)}
    assert split_by_partition([], eof) == {}
