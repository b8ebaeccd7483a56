"""`vigil replay`: copy a range of history (or the part about some subjects) to a sandbox topic,
keeping each record's key, timestamp, headers and bytes, so a staging stack can be driven by real
history. Records go out in timestamp order across partitions, each partition's in offset order, at
the pace they were written (`--speed 10x`: ten times faster) or as fast as possible (`max`); to the
same partition when the sandbox has as many partitions, else where its key puts them.

The live `events` topic (and the source itself) is refused unless forced: replaying history into
the live stream would make every worker act on it again.
"""

from __future__ import annotations

import heapq
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, Message

from app.backtest.source import HistoryReader, PartitionRange, ReadCounts, find_ranges, subject_filter
from app.backtest.times import TimeRange
from app.bus.clients import make_admin, make_consumer, make_producer
from app.config import Settings
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec

__all__ = ["MAX_SPEED", "RepublishCounts", "RepublishRefused", "merged_by_time", "parse_speed", "republish"]

#: --speed max: no pacing.
MAX_SPEED: Final = None
_SPEED: Final = re.compile(r"(\d+(?:\.\d+)?)x?")
_METADATA_TIMEOUT_S: Final = 30.0


class RepublishRefused(Exception):
    """The copy would go where it must not (or nowhere); the message says what to do."""


def parse_speed(text: str) -> float | None:
    """'max' -> None (as fast as possible); '10x' or '10' -> 10.0; '0.5x' -> 0.5 (half speed)."""
    value = text.strip().lower()
    if value == "max":
        return MAX_SPEED
    match = _SPEED.fullmatch(value)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"--speed {text!r}: use max, or a factor like 1x, 10x, 0.5x")
    return float(match.group(1))


@dataclass
class RepublishCounts:
    """What a replay copied."""

    copied: int = 0
    read: ReadCounts = field(default_factory=ReadCounts)
    failed: list[str] = field(default_factory=list)


def merged_by_time(reader: HistoryReader) -> Iterator[Message]:
    """The reader's messages in timestamp order across partitions (ties: partition, offset), each
    partition's in offset order."""
    buffered: dict[int, deque[Message]] = {p: deque() for p in reader.partitions}
    heads: list[tuple[int, int, int]] = []

    def refill(partitions: set[int]) -> None:
        while partitions:
            for p, messages in reader.poll_messages(partitions).items():
                buffered[p].extend(messages)
            partitions = {p for p in partitions if not buffered[p] and not reader.finished(p)}

    refill({p for p in buffered if not reader.finished(p)})
    for p, queue in buffered.items():
        if queue:
            heapq.heappush(heads, (queue[0].timestamp()[1], p, queue[0].offset() or 0))
    while heads:
        _, p, _ = heapq.heappop(heads)
        queue = buffered[p]
        yield queue.popleft()
        if not queue and not reader.finished(p):
            refill({p})
        if queue:
            heapq.heappush(heads, (queue[0].timestamp()[1], p, queue[0].offset() or 0))


def _partitions(settings: Settings, topic: str) -> tuple[int, int] | None:
    """(partitions, replication factor) of a topic, None when it does not exist."""
    consumer = make_consumer(settings, f"vigil-replay-{uuid.uuid4().hex[:12]}")
    try:
        described = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
    finally:
        consumer.close()
    if described is None or described.error is not None or not described.partitions:
        return None
    replicas = min(len(p.replicas) for p in described.partitions.values())
    return len(described.partitions), max(1, replicas)


def republish(settings: Settings, source: str, target: str, time_range: TimeRange, *, subject: str | None = None,
              speed: float | None = MAX_SPEED, force: bool = False, create: bool = False,
              on_progress: Callable[[int, int, int | None], None] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> RepublishCounts:
    """Copy the records of `source` in the range to `target` (real topic names; module docstring).
    `on_progress(records read, total, position ms)` is told as it goes."""
    live = settings.topic("events")
    if not force and target == live:
        raise RepublishRefused(f"refusing to write to the live events topic {target}: every worker would act on "
                               "history again; replay to a sandbox topic, or pass --force")
    if not force and target == source:
        raise RepublishRefused(f"refusing to copy {source} onto itself; pass --force if that is really wanted")
    source_shape = _partitions(settings, source)
    if source_shape is None:
        raise RepublishRefused(f"topic {source} does not exist")
    target_shape = _partitions(settings, target)
    if target_shape is None:
        if not create:
            raise RepublishRefused(f"topic {target} does not exist; create it, or pass --create to create it like "
                                   f"{source} ({source_shape[0]} partitions)")
        reconcile(make_admin(settings), [TopicSpec(name=target, partitions=source_shape[0],
                                                   replication=source_shape[1], config={})], dry_run=False)
        target_shape = source_shape
    same_partitions = target_shape[0] == source_shape[0]
    consumer = make_consumer(settings, f"vigil-replay-{uuid.uuid4().hex[:12]}")
    try:
        ranges: list[PartitionRange] = find_ranges(consumer, source, time_range.from_ms, time_range.to_ms)
    finally:
        consumer.close()
    total = sum(r.size for r in ranges)
    counts = RepublishCounts()
    keep = subject_filter(subject)
    reader = HistoryReader(settings, source, [r for r in ranges if r.size], keep=keep)
    counts.read = reader.counts
    producer = make_producer(settings, **{"linger.ms": 20})

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None and len(counts.failed) < 100:
            counts.failed.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    started = time.monotonic()
    first_ms: int | None = None
    try:
        for msg in merged_by_time(reader):
            if keep is not None and reader.record(msg) is None:
                continue  # not about a wanted subject (or unreadable: counted by the reader)
            timestamp_ms = msg.timestamp()[1]
            if speed is not None:
                first_ms = timestamp_ms if first_ms is None else first_ms
                ahead_s = (timestamp_ms - first_ms) / 1000 / speed - (time.monotonic() - started)
                if ahead_s > 0:
                    producer.poll(0)
                    sleep(ahead_s)
            _produce(producer, target, msg, timestamp_ms, msg.partition() if same_partitions else None, delivered)
            counts.copied += 1
            if on_progress is not None and counts.copied % 1000 == 0:
                on_progress(reader.counts.records, total, timestamp_ms)
        producer.flush(120)
    finally:
        reader.close()
    if counts.failed:
        raise RepublishRefused(f"{len(counts.failed)} record(s) could not be written to {target}, e.g. "
                               f"{counts.failed[0]}")
    if on_progress is not None:
        on_progress(reader.counts.records, total, None)
    return counts


def _produce(producer: Any, topic: str, msg: Message, timestamp_ms: int, partition: int | None,
             on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
    kwargs: dict[str, Any] = {"timestamp": timestamp_ms, "headers": msg.headers(), "on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    while True:
        try:
            producer.produce(topic, msg.value(), msg.key(), **kwargs)
            return
        except BufferError:
            producer.poll(0.05)
