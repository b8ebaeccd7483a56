"""Capture files: a slice of history as JSON lines, so a rules repository can keep known incidents
as fixtures (`vigil capture ... > incident.jsonl`, then `vigil rules test rules/ --events
incident.jsonl --expect incident.expect.jsonl`).

    {"vigil_capture": 1, "topic": "events", "from": 1714731300000, "to": 1714738500000, "subject": null}
    {"partition": 3, "offset": 1207, "timestamp": 1714731301234, "key": "web1/load", "type": "vigil.Event",
     "value": {"id": "...", "time": 1714731301230, "subject": "web1", "name": "load", ...}}

The first line says what was captured; each further line is one record as the worker decoded it,
with where it was. Values are written as JSON: bytes become base64 text, other non-JSON values
(decimals, UUIDs) their string. `replay_capture` runs a capture through the same replay as a
backtest (pipeline and rules, in event time), from the partitions and offsets it records.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final

import orjson

from app.backtest.replayer import FiredAction
from app.backtest.run import SliceDriver, build_replayer, sort_actions
from app.backtest.source import HistoryReader, MemorySource, ReadCounts, find_ranges, subject_filter
from app.backtest.times import TimeRange
from app.bus.clients import make_consumer
from app.config import Settings
from app.pipeline.config import PipelineConfig
from app.runtime.engine import InRecord

__all__ = ["HEADER_KEY", "Capture", "CaptureError", "capture_line", "is_capture_line", "read_capture",
           "replay_capture", "write_capture"]

HEADER_KEY: Final = "vigil_capture"
VERSION: Final = 1
_RECORD_KEYS: Final = frozenset({"partition", "offset", "value"})


class CaptureError(ValueError):
    """A capture file cannot be read; the message says where (file:line) and why."""


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def capture_header(topic: str, time_range: TimeRange, subject: str | None) -> bytes:
    """The first line of a capture file (with its newline)."""
    return orjson.dumps({HEADER_KEY: VERSION, "topic": topic, "from": time_range.from_ms, "to": time_range.to_ms,
                         "subject": subject}) + b"\n"


def capture_line(record: InRecord, partition: int) -> bytes:
    """One record as a capture line (with its newline)."""
    return orjson.dumps({"partition": partition, "offset": record.offset, "timestamp": record.timestamp_ms,
                         "key": record.key, "type": record.type_name, "value": record.value},
                        default=_json_default) + b"\n"


def is_capture_line(value: Any) -> bool:
    """Whether a parsed JSON line is a capture header or record (not a plain event of `rules test`)."""
    return isinstance(value, dict) and (HEADER_KEY in value or value.keys() >= _RECORD_KEYS)


def write_capture(settings: Settings, topic: str, time_range: TimeRange, out: IO[bytes], *,
                  subject: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> ReadCounts:
    """Write the records of `topic` (a real topic name) in the range to `out`, partition by partition
    in offset order. `on_progress(records, total)` is told as it goes. Returns what was read
    (unreadable records are counted, listed and skipped)."""
    consumer = make_consumer(settings, f"vigil-capture-{uuid.uuid4().hex[:12]}")
    try:
        ranges = find_ranges(consumer, topic, time_range.from_ms, time_range.to_ms)
    finally:
        consumer.close()
    total = sum(r.size for r in ranges)
    out.write(capture_header(topic[len(settings.topic_prefix):] if topic.startswith(settings.topic_prefix) else topic,
                             time_range, subject))
    reader = HistoryReader(settings, topic, [r for r in ranges if r.size], keep=subject_filter(subject))
    try:
        for partition in reader.partitions:
            while not reader.finished(partition):
                for record in reader.poll({partition}).get(partition, []):
                    out.write(capture_line(record, partition))
                if on_progress is not None:
                    on_progress(reader.counts.records + reader.counts.unreadable, total)
    finally:
        reader.close()
    return reader.counts


@dataclass
class Capture:
    """A capture file read back: what it says it holds, and its records per partition."""

    path: str
    topic: str = "events"
    from_ms: int | None = None
    to_ms: int | None = None
    subject: str | None = None
    records: dict[int, list[InRecord]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.records.values())

    def time_range(self, until_ms: int | None = None) -> TimeRange:
        """The range to replay: the captured one (else the records' Kafka timestamps), to `until_ms`
        when given (let time run on, so absence timers due by then fire)."""
        stamps = [r.timestamp_ms for rs in self.records.values() for r in rs]
        start = self.from_ms if self.from_ms is not None else min(stamps, default=0)
        end = self.to_ms if self.to_ms is not None else max(stamps, default=start)
        if until_ms is not None:
            end = until_ms
        return TimeRange(start, max(start, end))


def _lines(path: str) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip() or text.lstrip().startswith(b"#"):
                continue
            try:
                yield number, orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise CaptureError(f"{path}:{number}: not JSON: {exc}") from None


def read_capture(path: str | Path) -> Capture:
    """Read a capture file (CaptureError naming file:line for a line that is not a capture record)."""
    capture = Capture(str(path))
    for number, value in _lines(str(path)):
        if isinstance(value, dict) and HEADER_KEY in value:
            capture.topic = str(value.get("topic") or "events")
            capture.from_ms, capture.to_ms, capture.subject = value.get("from"), value.get("to"), value.get("subject")
            continue
        if not is_capture_line(value):
            raise CaptureError(f"{path}:{number}: not a capture record (needs partition, offset and value); "
                               "a file of plain events is read as such only when none of its lines is a capture line")
        partition, offset = value["partition"], value["offset"]
        if not isinstance(partition, int) or not isinstance(offset, int):
            raise CaptureError(f"{path}:{number}: partition and offset must be integers")
        key = value.get("key")
        timestamp = value.get("timestamp")
        capture.records.setdefault(partition, []).append(InRecord(
            key if isinstance(key, str) else None, value["value"], offset,
            timestamp if isinstance(timestamp, int) else 0, value.get("type") or "vigil.Event",
            f"{path}:{number}".encode(), key.encode() if isinstance(key, str) else None))
    for records in capture.records.values():
        records.sort(key=lambda r: r.offset)
    return capture


def replay_capture(capture: Capture, rules_dirs: list[Path], *, until_ms: int | None = None,
                   pipeline_config: PipelineConfig | None = None) -> list[FiredAction]:
    """The would-be actions of the rules in `rules_dirs` over a capture: the backtest's replay (the
    worker's pipeline and rules stage, in event time), then time run to the end of the captured
    range (or `until_ms`). Rule directories must be valid (run_backtest's check_rule_dirs)."""
    replayer = build_replayer(pipeline_config or PipelineConfig.model_validate({}), rules_dirs,
                              partitions=sorted(capture.records) or [0])
    SliceDriver(replayer, MemorySource(capture.records), time_range=capture.time_range(until_ms)).run()
    return sort_actions(replayer.actions)
