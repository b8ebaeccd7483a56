"""A stand-in for a consumed confluent_kafka.Message, for unit tests of code that reads them."""

from __future__ import annotations


class ConsumedMessage:
    """What the code under test reads of a consumed record: no error, topic, partition, offset,
    value, key, (timestamp type, ms) and headers."""

    def __init__(self, partition: int, offset: int, value: bytes, *, topic: str = "t", key: bytes | None = b"k",
                 timestamp_ms: int | None = None) -> None:
        self._topic, self._partition, self._offset, self._value, self._key = topic, partition, offset, value, key
        self._timestamp_ms = 1000 + offset if timestamp_ms is None else timestamp_ms

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms

    def headers(self) -> None:
        return None
