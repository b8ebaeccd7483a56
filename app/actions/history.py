"""Reading recent history from topics (client side, no consumer group): actions, their results,
suppressed actions and events since a point in time. For listings and traces, not for processing.

A scan starts at the first offset at or after `since_ms` (by record timestamp) in every partition
and stops at the end offsets seen when it started, so it terminates while the topic keeps growing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from app.actions.join import ActionRow, join_actions
from app.actions.trace import TraceRecords, resolve_trace_id
from app.bus.clients import make_consumer
from app.config import Settings
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient, RegistryError
from app.registry.waiting import RegistryWait
from app.rules.topics import ACTIONS_TOPIC, RESULTS_TOPIC, SUPPRESSED_TOPIC

EVENTS_TOPIC: Final = "events"

__all__ = [
    "History",
    "HistoryError",
    "TopicRecord",
    "avro_decoder",
    "json_decoder",
    "load_history",
    "load_trace_records",
    "scan_topic",
]

log = logging.getLogger(__name__)

_IDLE_STOP_S: Final = 5.0  # nothing arrives although the end is not reached: an open transaction
_UNDECODABLE_LOGGED: Final = 10  # per scan, one line each; the rest only counted


class HistoryError(Exception):
    """A topic could not be read; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One decoded record."""

    value: Any
    type_name: str | None
    timestamp_ms: int
    partition: int
    offset: int


Decoder = Callable[[bytes], tuple[str | None, Any]]


def json_decoder(raw: bytes) -> tuple[str | None, Any]:
    """Decode a JSON value (no type name)."""
    return None, orjson.loads(raw)


def avro_decoder(serde: AvroSerde) -> Decoder:
    """Decode Confluent-framed Avro values with `serde`."""
    return serde.decode_typed


def scan_topic(settings: Settings, topic: str, since_ms: int, decode: Decoder, *,
               needles: Iterable[bytes] = (), timeout_s: float = 60.0,
               notify: Callable[[str], None] | None = None) -> list[TopicRecord]:
    """Records of logical `topic` from `since_ms` to the current end, decoded; undecodable values
    are skipped, logged with their partition and offset. `needles`: only decode values containing
    one of these byte strings (a cheap filter for scanning `events` for ids).

    While the schema registry is unavailable the scan waits for it (within `timeout_s`), telling
    `notify` (default: the log) once; no record is skipped for that. HistoryError if it stays away."""
    real = settings.topic(topic)
    wanted = [n for n in needles if n]
    consumer = make_consumer(settings, f"vigil-history-{uuid.uuid4().hex[:12]}",
                             **{"enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        try:
            meta = consumer.list_topics(real, timeout=10).topics.get(real)
        except KafkaException as exc:
            raise HistoryError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise HistoryError(f"topic {real} does not exist: create it (vigil topics apply)")
        starts = consumer.offsets_for_times([TopicPartition(real, p, since_ms) for p in meta.partitions],
                                            timeout=10)
        ends: dict[int, int] = {}
        assign = []
        for tp in starts:
            _, hi = consumer.get_watermark_offsets(TopicPartition(real, tp.partition), timeout=10)
            if tp.offset >= 0 and tp.offset < hi:
                ends[tp.partition] = hi
                assign.append(TopicPartition(real, tp.partition, tp.offset))
        if not assign:
            return []
        consumer.assign(assign)
        return _read(consumer, real, ends, decode, wanted, timeout_s, RegistryWait(
            notify=notify or log.warning, deadline_s=timeout_s))
    finally:
        consumer.close()


def _read(consumer: Any, topic: str, ends: dict[int, int], decode: Decoder, needles: list[bytes],
          timeout_s: float, registry_wait: RegistryWait) -> list[TopicRecord]:
    out: list[TopicRecord] = []
    skipped = 0
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    while ends:
        if time.monotonic() > deadline:
            raise HistoryError(f"reading {topic} took longer than {timeout_s:.0f}s; narrow it with --since")
        msgs = consumer.consume(5000, timeout=0.2)
        if not msgs:
            if time.monotonic() - idle_since > _IDLE_STOP_S:
                break
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
            continue
        idle_since = time.monotonic()
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", topic, msg.error().str())
                continue
            end = ends.get(msg.partition())
            if end is None or msg.offset() >= end:
                continue
            if msg.offset() + 1 >= end:
                del ends[msg.partition()]
            raw = msg.value()
            if raw is None or (needles and not any(n in raw for n in needles)):
                continue
            try:
                type_name, value = registry_wait.call(partial(decode, raw))
            except (DecodeError, orjson.JSONDecodeError) as exc:
                skipped += 1
                if skipped <= _UNDECODABLE_LOGGED:
                    reason = exc.reason if isinstance(exc, DecodeError) else f"not JSON: {exc}"
                    log.warning("skipping %s[%d]@%d, it cannot be decoded: %s", topic, msg.partition(),
                                msg.offset(), reason)
                continue
            except RegistryError as exc:
                again = " (try again once it answers)" if exc.is_retriable() else ""
                raise HistoryError(f"cannot decode {topic}[{msg.partition()}]@{msg.offset()} without the schema "
                                   f"registry: {exc}{again}") from exc
            out.append(TopicRecord(value, type_name, msg.timestamp()[1], msg.partition(), msg.offset()))
    if skipped:
        log.warning("%s: skipped %d record(s) that could not be decoded", topic, skipped)
    return out


@dataclass
class History:
    """Recent actions, results, suppressed actions (and events, when asked for) of one read."""

    actions: list[dict[str, Any]]
    results: list[dict[str, Any]]
    suppressed: list[dict[str, Any]]

    def rows(self) -> list[ActionRow]:
        """Actions joined with their results (see join_actions)."""
        return join_actions(self.actions, self.results, self.suppressed)


def load_history(settings: Settings, since_ms: int, *, serde: AvroSerde | None = None,
                 notify: Callable[[str], None] | None = None) -> History:
    """Actions, results and suppressed actions recorded since `since_ms` (`notify`: see scan_topic)."""
    serde = serde or AvroSerde(RegistryClient.from_settings(settings))
    avro = avro_decoder(serde)
    return History(
        actions=[r.value for r in scan_topic(settings, ACTIONS_TOPIC, since_ms, avro, notify=notify)],
        results=[r.value for r in scan_topic(settings, RESULTS_TOPIC, since_ms, avro, notify=notify)],
        suppressed=[r.value for r in scan_topic(settings, SUPPRESSED_TOPIC, since_ms, json_decoder, notify=notify)
                    if isinstance(r.value, dict)],
    )


def load_trace_records(settings: Settings, target_id: str, since_ms: int, *,
                       notify: Callable[[str], None] | None = None) -> TraceRecords:
    """Everything needed to trace `target_id` (an event, action or result id) since `since_ms`:
    actions, results and suppressed actions, plus the events of its trace (found by scanning
    `events` for records that mention the trace id, decoding only those)."""
    serde = AvroSerde(RegistryClient.from_settings(settings))
    history = load_history(settings, since_ms, serde=serde, notify=notify)
    records = TraceRecords([], history.actions, history.results, history.suppressed)
    trace_id = resolve_trace_id(target_id, records)
    needle = trace_id or target_id
    scanned = scan_topic(settings, EVENTS_TOPIC, since_ms, avro_decoder(serde), needles=[needle.encode()],
                         notify=notify)
    records.events = [r.value for r in scanned if isinstance(r.value, dict)]
    if trace_id is None:  # an event id (or unknown): its trace may be named by another event
        trace_id = resolve_trace_id(target_id, records)
        if trace_id is not None and trace_id != needle:
            scanned = scan_topic(settings, EVENTS_TOPIC, since_ms, avro_decoder(serde), needles=[trace_id.encode()],
                                 notify=notify)
            records.events = [r.value for r in scanned if isinstance(r.value, dict)]
    return records
