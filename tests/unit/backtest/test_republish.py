"""Re-publishing: the pace, the merge by timestamp, and the refusal to write into the live stream."""

from __future__ import annotations

from typing import Any

import pytest

from app.backtest.republish import RepublishRefused, merged_by_time, parse_speed, republish
from app.backtest.times import TimeRange
from app.config import load_settings


@pytest.mark.parametrize(("text", "speed"), [("max", None), ("MAX", None), ("10x", 10.0), ("10", 10.0),
                                              ("0.5x", 0.5), ("1x", 1.0)])
def test_parse_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["fast", "0x", "-2x", "x"])
def test_parse_speed__errors(text: str) -> None:
    with pytest.raises(ValueError, match="use max, or a factor"):
        parse_speed(text)


class _Message:
    def __init__(self, partition: int, offset: int, timestamp_ms: int) -> None:
        self._p, self._o, self._t = partition, offset, timestamp_ms

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return 1, self._t


class _Reader:
    """Hands out each partition's messages two at a time."""

    def __init__(self, stamps: dict[int, list[int]]) -> None:
        self.left = {p: [_Message(p, o, t) for o, t in enumerate(ts)] for p, ts in stamps.items()}
        self.partitions = sorted(stamps)

    def poll_messages(self, wanted: set[int]) -> dict[int, list[Any]]:
        out = {p: self.left[p][:2] for p in wanted if self.left[p]}
        for p in out:
            self.left[p] = self.left[p][2:]
        return out

    def finished(self, partition: int) -> bool:
        return not self.left[partition]


def test_merged_by_time__timestamp_order_across_partitions_offset_order_within() -> None:
    reader = _Reader({0: [1, 5, 6, 20], 1: [2, 3, 30], 2: [], 3: [4, 4]})
    merged = [(m.partition(), m.offset()) for m in merged_by_time(reader)]  # type: ignore[arg-type]
    assert merged == [(0, 0), (1, 0), (1, 1), (3, 0), (3, 1), (0, 1), (0, 2), (0, 3), (1, 2)]


def test_republish__refuses_the_live_events_topic_and_the_source_itself() -> None:
    settings = load_settings(topic_prefix="p-")
    span = TimeRange(0, 1)
    with pytest.raises(RepublishRefused, match="refusing to write to the live events topic p-events"):
        republish(settings, "p-events", "p-events", span)
    with pytest.raises(RepublishRefused, match="onto itself"):
        republish(settings, "p-alerts", "p-alerts", span)
