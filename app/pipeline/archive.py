"""The archive index: where every accepted event on `events` is (partition, offset), found by id
or by identity and time, without scanning the topic.

Two tables, co-partitioned with `events`:

- `event-ids`: event id -> [partition, offset, time_ms, type, subject, name] (`vigil events get`).
- `event-find` (a BucketedTable): `<hour>\\x1f<subject>\\x1e<name>\\x1f<time>\\x1f<id>` -> id, sorted by
  hour of event time, then identity, then time (`vigil events find`). A query reads only the hours
  it asks for, and within an hour only the identities under the literal prefix of its globs.

Retention: an hour of the find index is deleted, with the ids it lists, once the partition's event
time is `retention` past its end, so the index keeps what Kafka keeps instead of growing forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.globs import glob_matcher
from app.pipeline.buckets import BucketedTable
from app.pipeline.query import key_prefix
from app.pipeline.validate import NormalizedEvent
from app.runtime.tables import Table

__all__ = ["ArchiveIndex", "FoundEvent"]

_TIME_OFFSET: Final = 1 << 62  # hex times stay non-negative (and sorted) for any ms time
_SEP: Final = "\x1f"
_IDENTITY_SEP: Final = "\x1e"


@dataclass(frozen=True, slots=True)
class FoundEvent:
    """Where one event is: what `vigil events get/find` print before fetching it."""

    id: str
    partition: int
    offset: int
    time_ms: int
    type: str
    subject: str
    name: str

    def to_json(self, topic: str) -> dict[str, Any]:
        """JSON for the HTTP API (topic: the logical source topic)."""
        return {"id": self.id, "topic": topic, "partition": self.partition, "offset": self.offset,
                "time": self.time_ms, "type": self.type, "subject": self.subject, "name": self.name}


class ArchiveIndex:
    """Indexes events as the pipeline agent sees them; answers lookups from outside agents."""

    def __init__(self, *, retention_ms: int) -> None:
        self.ids = Table("event-ids", help="event id -> [partition, offset, time_ms, type, subject, name]")
        self.find = BucketedTable("event-find", retention_ms=retention_ms,
                                  help="hour + identity + time + id -> id")

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.ids, *self.find.tables

    # -- inside the agent -----------------------------------------------------------------------------
    def add(self, ev: NormalizedEvent, ctx: Any) -> None:
        """Index one accepted event at the context's partition and offset."""
        time_ms = ev.time_ms
        self.ids[ev.id] = [ctx.partition, ctx.offset, time_ms, ev.type_name, ev.subject, ev.name]
        self.find.put(time_ms, f"{ev.subject}{_IDENTITY_SEP}{ev.name}{_SEP}{time_ms + _TIME_OFFSET:016x}{_SEP}{ev.id}",
                      ev.id, ctx)

    def owns_timer(self, timer_key: str) -> bool:
        return self.find.owns_timer(timer_key)

    def prune(self, timer_key: str) -> int:
        """An hour of the index aged out: forget its events; returns how many."""
        doomed = self.find.prune(timer_key)
        for _, event_id in doomed:
            self.ids.pop(event_id)
        return len(doomed)

    # -- outside agents (HTTP queries) ----------------------------------------------------------------
    def lookup(self, event_id: str) -> FoundEvent | None:
        """Where an event is, if one of the locally assigned partitions indexed it."""
        entry = self.ids.lookup(event_id)
        if entry is None:
            return None
        partition, offset, time_ms, type_name, subject, name = entry
        return FoundEvent(event_id, partition, offset, time_ms, type_name, subject, name)

    def find_events(self, *, subject: str = "*", name: str = "*", since_ms: int, until_ms: int,
                    limit: int) -> list[FoundEvent]:
        """Events of matching identities with since_ms <= time <= until_ms in the local
        partitions, newest first, at most `limit`."""
        match_subject, match_name = glob_matcher(subject), glob_matcher(name)
        prefix = key_prefix(subject, name, separator=_IDENTITY_SEP)
        candidates: list[tuple[int, str, int]] = []
        for partition in self.find.partitions():
            for rest, event_id in self.find.scan(partition, since_ms=since_ms, until_ms=until_ms, prefix=prefix):
                id_at = len(rest) - len(event_id) - 1
                time_ms = int(rest[id_at - 16:id_at], 16) - _TIME_OFFSET
                if not since_ms <= time_ms <= until_ms:
                    continue
                ev_subject, _, ev_name = rest[:id_at - 17].partition(_IDENTITY_SEP)
                if match_subject(ev_subject) and match_name(ev_name):
                    candidates.append((time_ms, event_id, partition))
        candidates.sort(reverse=True)
        found = []
        for time_ms, event_id, partition in candidates[:limit]:
            entry = self.ids.partition(partition).get(event_id)
            if entry is not None:
                _, offset, _, type_name, ev_subject, ev_name = entry
                found.append(FoundEvent(event_id, partition, offset, time_ms, type_name, ev_subject, ev_name))
        return found
