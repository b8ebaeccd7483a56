"""Where a backtest's records come from: a range of a Kafka topic (found by timestamp on every
partition, read with the worker's decoder), or records already in memory (a capture file, a test).

Sources hand out decoded records per partition, in offset order, for the partitions the caller
wants now (`poll`), and say when a partition has nothing more in the range (`finished`). A record
that cannot be decoded is counted, reported with topic, partition and offset, and skipped; a
schema the registry cannot give right now is waited for (the record may be fine).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from app.bus.clients import make_consumer
from app.bus.faults import is_transient
from app.config import Settings
from app.globs import glob_matcher
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient
from app.registry.errors import RegistryError
from app.retry import RetryGaveUp, retry_call
from app.runtime.engine import InRecord

__all__ = ["HistoryReader", "MemorySource", "PartitionRange", "RecordSource", "SourceError", "Unreadable",
           "find_ranges", "subject_filter"]

log = logging.getLogger(__name__)

#: How much of one partition a fetch may return (as the worker: large batches per partition).
_FETCH_PARTITION_BYTES: Final = 32 * 1024 * 1024
#: How much librdkafka reads ahead (its default is 1 GiB; the worker's 256 MiB): a backtest is slower
#: than the network, so more read ahead is only memory.
_QUEUE_KBYTES: Final = 64 * 1024
#: Unreadable records listed by name (all are counted).
MAX_LISTED: Final = 100
_METADATA_TIMEOUT_S: Final = 30.0


class SourceError(Exception):
    """The topic cannot be read (missing, no access); the message says which and why."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record that could not be decoded, where it is and why."""

    topic: str
    partition: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """The offsets [start, end) of one partition whose records fall in a time range."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


class RecordSource(Protocol):
    """Decoded records per partition, in offset order."""

    def poll(self, wanted: set[int]) -> dict[int, list[InRecord]]:
        """Some records of (some of) the `wanted` partitions; may be empty."""
        ...

    def finished(self, partition: int) -> bool:
        """Whether every record of `partition` in the range was handed out."""
        ...


def subject_filter(pattern: str | None) -> Callable[[Any], bool] | None:
    """A predicate on decoded records keeping those whose `subject` matches the glob (None: all)."""
    if pattern is None:
        return None
    matches = glob_matcher(pattern)

    def keep(value: Any) -> bool:
        subject = value.get("subject") if isinstance(value, dict) else None
        return isinstance(subject, str) and bool(matches(subject))

    return keep


class MemorySource:
    """Records in memory, per partition in offset order (everything is handed out at the first poll)."""

    def __init__(self, records: dict[int, list[InRecord]]) -> None:
        self._records = {p: list(rs) for p, rs in records.items()}
        self.partitions = sorted(self._records)

    def poll(self, wanted: set[int]) -> dict[int, list[InRecord]]:
        return {p: self._records.pop(p) for p in sorted(wanted) if p in self._records}

    def finished(self, partition: int) -> bool:
        return partition not in self._records


def find_ranges(consumer: Consumer, topic: str, from_ms: int, to_ms: int) -> list[PartitionRange]:
    """Per partition of `topic`, the offsets of the records with a timestamp in [from_ms, to_ms]:
    from the first at or after from_ms to the first after to_ms (the end of the partition when
    there is none). Raises SourceError for a topic that does not exist."""
    metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        reason = f": {described.error.str()}" if described is not None and described.error is not None else ""
        raise SourceError(f"topic {topic} does not exist{reason}")
    partitions = sorted(described.partitions)

    def lookup(at_ms: int) -> dict[int, int]:  # a leader moving or still being elected: retried
        return retry_call(lambda: _offsets_at(consumer, topic, partitions, at_ms), is_retriable=is_transient,
                          deadline_s=_METADATA_TIMEOUT_S)

    try:
        starts, ends = lookup(from_ms), lookup(to_ms + 1)
    except RetryGaveUp as exc:
        raise SourceError(f"cannot look up the offsets of {topic}: {exc.__cause__}") from exc
    return [PartitionRange(p, starts[p], max(starts[p], ends[p])) for p in partitions]


def _offsets_at(consumer: Consumer, topic: str, partitions: list[int], at_ms: int) -> dict[int, int]:
    """The first offset with a timestamp >= at_ms per partition (the high watermark when none).
    An answer that is no offset (a partition between leaders) raises a transient KafkaException."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in partitions],
                                       timeout=_METADATA_TIMEOUT_S)
    out: dict[int, int] = {}
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
        offset = tp.offset
        if offset < 0:  # OFFSET_END: no record that late
            offset = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=_METADATA_TIMEOUT_S,
                                                    cached=False)[1]
        if offset < 0:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE,
                                            f"no offset for {topic}[{tp.partition}] at {at_ms} yet"))
        out[tp.partition] = offset
    return out


@dataclass
class _Partition:
    range: PartitionRange
    #: the next offset expected (records before it are duplicates after a resume)
    next_offset: int
    finished: bool = False
    paused: bool = False


@dataclass
class ReadCounts:
    """What a reader has read so far."""

    records: int = 0
    filtered: int = 0
    unreadable: int = 0
    listed: list[Unreadable] = field(default_factory=list)


class HistoryReader:
    """Reads the records of some partitions' ranges from Kafka, decoded as the worker decodes them.

    Only the partitions a poll wants are fetched (the others are paused), so a partition far ahead
    in event time does not fill memory while the others catch up."""

    def __init__(self, settings: Settings, topic: str, ranges: Iterable[PartitionRange], *,
                 keep: Callable[[Any], bool] | None = None, batch: int = 20_000, poll_timeout_s: float = 0.5) -> None:
        self.topic = topic
        self.keep = keep
        self.batch = batch
        self.poll_timeout_s = poll_timeout_s
        self.counts = ReadCounts()
        self._registry = RegistryClient.from_settings(settings)
        self._serde = AvroSerde(self._registry)
        self._parts = {r.partition: _Partition(r, r.start, finished=r.size == 0) for r in ranges}
        self._consumer = make_consumer(settings, f"vigil-backtest-{uuid.uuid4().hex[:12]}", **{
            "enable.partition.eof": True, "fetch.min.bytes": 1, "queued.max.messages.kbytes": _QUEUE_KBYTES,
            "max.partition.fetch.bytes": _FETCH_PARTITION_BYTES})
        active = [TopicPartition(topic, p.range.partition, p.range.start) for p in self._parts.values()
                  if not p.finished]
        if active:
            self._consumer.assign(active)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def finished(self, partition: int) -> bool:
        return self._parts[partition].finished

    def position(self, partition: int) -> int:
        """The next offset to read of a partition."""
        return self._parts[partition].next_offset

    def poll(self, wanted: set[int]) -> dict[int, list[InRecord]]:
        # `poll_messages` then `record`, in one loop: this runs once per record of the range
        self._fetch_only(wanted)
        out: dict[int, list[InRecord]] = {}
        if not any(not self._parts[p].finished for p in wanted if p in self._parts):
            return out
        decode, keep, parts, counts = self._serde.decode_typed, self.keep, self._parts, self.counts
        for msg in self._consumer.consume(self.batch, timeout=self.poll_timeout_s):
            p, offset = msg.partition(), msg.offset()
            part = parts.get(p)
            if (msg.error() is not None or part is None or part.finished or offset is None
                    or not part.next_offset <= offset < part.range.end - 1):
                if not self._in_range(msg):  # errors, ends of ranges, duplicates: the careful way
                    continue
            else:
                part.next_offset = offset + 1
                counts.records += 1
            raw = msg.value()
            try:
                type_name, value = decode(raw)
            except (DecodeError, RegistryError):
                decoded = self._decode(raw, p, offset)  # waits out a registry outage, reports the unreadable
                if decoded is None:
                    continue
                type_name, value = decoded
            if keep is not None and not keep(value):
                counts.filtered += 1
                continue
            key = msg.key()
            record = InRecord(key.decode(errors="replace") if key is not None else None, value, offset,
                              msg.timestamp()[1], type_name, raw, key)
            found = out.get(p)
            if found is None:
                out[p] = [record]
            else:
                found.append(record)
        return out

    def poll_messages(self, wanted: set[int]) -> dict[int, list[Message]]:
        """Like `poll`, the messages as consumed (in the range, not decoded, not filtered)."""
        self._fetch_only(wanted)
        out: dict[int, list[Message]] = {}
        if not any(not self._parts[p].finished for p in wanted if p in self._parts):
            return out
        for msg in self._consumer.consume(self.batch, timeout=self.poll_timeout_s):
            if self._in_range(msg):
                p = msg.partition()
                found = out.get(p)
                if found is None:
                    out[p] = [msg]
                else:
                    found.append(msg)
        return out

    def record(self, msg: Message) -> InRecord | None:
        """A message of `poll_messages` decoded (None: unreadable, or not kept by the filter)."""
        p, offset, raw = msg.partition(), msg.offset(), msg.value()
        decoded = self._decode(raw, p, offset)
        if decoded is None:
            return None
        type_name, value = decoded
        if self.keep is not None and not self.keep(value):
            self.counts.filtered += 1
            return None
        key = msg.key()
        return InRecord(key.decode(errors="replace") if key is not None else None, value, offset, msg.timestamp()[1],
                        type_name, raw, key)

    def _fetch_only(self, wanted: set[int]) -> None:
        pause, resume = [], []
        for p, part in self._parts.items():
            want = p in wanted and not part.finished
            if want and part.paused:
                resume.append(TopicPartition(self.topic, p, part.next_offset))
                part.paused = False
            elif not want and not part.paused and not (part.finished and part.range.size == 0):
                pause.append(TopicPartition(self.topic, p))
                part.paused = True
        if pause:
            self._consumer.pause(pause)
        if resume:
            self._consumer.resume(resume)

    def _in_range(self, msg: Message) -> bool:
        """Whether a consumed message is the next record of one of the ranges (errors, duplicates
        after a resume and records past the end are not); notes partitions that reached their end."""
        err = msg.error()
        p = msg.partition()
        part = self._parts.get(p) if p is not None else None
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if part is not None and (msg.offset() or 0) >= part.range.end:
                    self._finish(part)
                return False
            if err.fatal():
                raise KafkaException(err)
            log.warning("backtest: reading %s: %s (retrying)", self.topic, err.str())
            return False
        offset = msg.offset()
        if part is None or part.finished or offset is None or offset < part.next_offset:
            return False  # not ours, past the range, or fetched again after a resume
        if offset >= part.range.end:
            self._finish(part)
            return False
        part.next_offset = offset + 1
        if part.next_offset >= part.range.end:
            self._finish(part)
        self.counts.records += 1
        return True

    def _decode(self, raw: bytes | None, partition: int, offset: int) -> tuple[str, Any] | None:
        """(type name, record), or None for an unreadable record (counted and reported). A registry
        that cannot answer now is retried until it does: the record may be fine."""
        try:
            try:
                return self._serde.decode_typed(raw, topic=self.topic, partition=partition, offset=offset)
            except RegistryError as exc:
                if not exc.is_retriable():
                    raise
                return retry_call(lambda: self._serde.decode_typed(raw, topic=self.topic, partition=partition,
                                                                   offset=offset),
                                  is_retriable=_registry_retriable, deadline_s=None, on_retry=_log_registry_retry)
        except DecodeError as exc:
            self._unreadable(partition, offset, exc.reason)
        except RegistryError as exc:  # a refusal, not an outage: nothing to read the record with
            self._unreadable(partition, offset, f"schema registry: {exc}")
        return None

    def _finish(self, part: _Partition) -> None:
        part.finished = True
        if not part.paused:
            self._consumer.pause([TopicPartition(self.topic, part.range.partition)])
            part.paused = True

    def _unreadable(self, partition: int, offset: int, reason: str) -> None:
        self.counts.unreadable += 1
        item = Unreadable(self.topic, partition, offset, reason)
        if len(self.counts.listed) < MAX_LISTED:
            self.counts.listed.append(item)
        log.warning("backtest: skipped unreadable record %s", item)

    def close(self) -> None:
        """Close the consumer and the registry client."""
        try:
            self._consumer.close()
        finally:
            self._registry.close()


def _registry_retriable(exc: BaseException) -> bool:
    return isinstance(exc, RegistryError) and exc.is_retriable()


def _log_registry_retry(exc: BaseException, delay_s: float) -> None:
    log.warning("backtest: schema registry unavailable (%s); retrying in %.1fs", exc, delay_s)
