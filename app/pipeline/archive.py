"""The archive index: where every accepted event on `events` is (partition, offset), found by id
or by identity and time, without scanning the topic.

- `event-ids`: event id -> its offset, time, type, subject and name in the partition of the store
  (`vigil events get`), as one short string (see `_location`): an entry per event is the index's
  main cost, and a string is the cheapest value to build, keep and encode. A local-only table (no
  changelog: an event costs no Kafka record for it): everything in it is also in the references
  below, which are changelogged, so after a restore `rebuild` re-derives it.
- `event-find` (a BucketedTable): pages of an identity's event references
  [[time_ms, id, offset, type], ...] (type "" for vigil.Event) under
  `<hour>\x1f<subject>\x1e<name>\x1f<time>\x1f<id>` (the hour, time and id of the page's newest
  event), sorted by hour, identity and time (`vigil events find`). The identity's newest references
  wait in its tracker state (app.pipeline.tracker) until PAGE_SIZE of them, or the next hour,
  make a page: one write per page instead of one per event. A query reads the pages from the hour
  of `since` on, only under the literal prefix of its globs, plus the waiting references of the
  matching identities.

Retention: an hour of pages is deleted, with the ids they list, once the partition's event time is
`retention` past its end, so the index keeps what Kafka keeps instead of growing forever. (The
last references of an identity that fell silent wait, with their ids, until its next event.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from app.globs import glob_matcher
from app.pipeline.buckets import BucketedTable
from app.pipeline.query import key_prefix
from app.pipeline.validate import EVENT_TYPE, NormalizedEvent
from app.runtime.context import AgentContext
from app.runtime.keys import IDENTITY_SEP, identity_part, pack, pack_time
from app.runtime.tables import Table

__all__ = ["PAGE_SIZE", "ArchiveIndex", "EventRef", "FoundEvent", "PageCodec", "refs_from_json"]

#: Event references per page of the find index.
PAGE_SIZE: Final = 16
#: (time_ms, event id, offset, type name or "" for vigil.Event)
EventRef = tuple[int, str, int, str]

#: Entries re-indexed per write while rebuilding (bounds the memory a rebuild of millions takes).
_REBUILD_CHUNK: Final = 10_000
#: Between the fields of an event-ids value (a value format, not a key: see `_location`).
_FIELD_SEP: Final = "\x1f"


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


def _location(offset: int, time_ms: int, type_name: str, subject: str, name: str) -> str:
    """An event-ids value. The subject's length is written out, so subject and name may hold any
    character (the other fields cannot hold the separator)."""
    return f"{offset}{_FIELD_SEP}{time_ms}{_FIELD_SEP}{type_name}{_FIELD_SEP}{len(subject)}{_FIELD_SEP}{subject}{name}"


def _parse_location(value: str) -> tuple[int, int, str, str, str]:
    """(offset, time_ms, type name, subject, name) of an event-ids value."""
    offset, time_ms, type_name, subject_len, identity = value.split(_FIELD_SEP, 4)
    cut = int(subject_len)
    return int(offset), int(time_ms), type_name, identity[:cut], identity[cut:]


class LocationCodec:
    """Codec of event-ids values: the string as UTF-8. Also reads the JSON lists
    [partition, offset, time_ms, type, subject, name] that earlier versions stored."""

    name = "vigil-event-location"

    def encode(self, value: str) -> bytes:
        return value.encode()

    def decode(self, data: bytes) -> str:
        if data[:1] == b"[":
            _, offset, time_ms, type_name, subject, name = orjson.loads(data)
            return _location(offset, time_ms, type_name, subject, name)
        return data.decode()


def refs_from_json(refs: Iterable[Any]) -> list[EventRef]:
    """Event references as stored (JSON arrays) back as tuples. References that versions before
    the offset was kept wrote (2 fields) are dropped: their events cannot be fetched."""
    return [(ref[0], ref[1], ref[2], ref[3]) for ref in refs if len(ref) == 4]


class PageCodec:
    """Codec of find-index pages, (subject, name, references): JSON, references read back as tuples."""

    name = "json"

    def encode(self, value: tuple[str, str, tuple[EventRef, ...]]) -> bytes:
        return orjson.dumps(value)

    def decode(self, data: bytes) -> tuple[str, str, tuple[EventRef, ...]]:
        subject, name, refs = orjson.loads(data)
        return subject, name, tuple(refs_from_json(refs))


class ArchiveIndex:
    """Indexes events as the pipeline agent sees them; answers lookups from outside agents."""

    def __init__(self, *, retention_ms: int) -> None:
        self.ids = Table("event-ids", codec=LocationCodec(), changelog=False, cache_limit=0,
                         help="event id -> offset, time_ms, type, subject, name")
        self.find = BucketedTable("event-find", retention_ms=retention_ms, codec=PageCodec(),
                                  help="hour + identity + time + id -> id")

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.ids, *self.find.tables

    # -- inside the agent -----------------------------------------------------------------------------
    @staticmethod
    def ref(ev: NormalizedEvent, offset: int) -> EventRef:
        """The reference of an accepted event at `offset` (in pages, and waiting in its identity)."""
        return ev.time_ms, ev.id, offset, "" if ev.type_name == EVENT_TYPE else ev.type_name

    @staticmethod
    def add(ids: dict[str, str], subject: str, name: str, ref: EventRef) -> None:
        """Note one event's id in `ids`, a batch of id index entries for `index` (its reference goes
        to a page through the tracker: `write_page`)."""
        time_ms, event_id, offset, type_name = ref
        ids[event_id] = _location(offset, time_ms, type_name, subject, name)

    def index(self, ids: dict[str, str]) -> None:
        """Write a batch of id index entries (`add`) to the active partition."""
        self.ids.update(ids)

    def rebuild(self, waiting: Iterable[tuple[str, str, Iterable[EventRef]]]) -> int:
        """Re-index the ids of the bound partition from its pages and the references still waiting
        in identities; returns how many."""
        indexed = 0
        ids: dict[str, str] = {}
        pages = (page for _, page in self.find.table.items())
        for subject, name, refs in itertools.chain(pages, waiting):
            for ref in refs:
                self.add(ids, subject, name, ref)
                indexed += 1
            if len(ids) >= _REBUILD_CHUNK:
                self.index(ids)
                ids = {}
        self.index(ids)
        return indexed

    def write_page(self, subject: str, name: str, refs: tuple[EventRef, ...], ctx: AgentContext) -> None:
        """Store a page of one identity's event references."""
        newest_ms, newest_id = max(refs)[:2]
        rest = pack(identity_part(subject, name), pack_time(newest_ms), newest_id)
        # tuples of plain values: the garbage collector stops tracking them (there are many pages)
        self.find.put(newest_ms, rest, (subject, name, refs), ctx)

    def owns_timer(self, timer_key: str) -> bool:
        return self.find.owns_timer(timer_key)

    def prune(self, timer_key: str) -> int:
        """An hour of pages aged out: forget their events; returns how many."""
        forgotten = 0
        for _, (_, _, refs) in self.find.prune(timer_key):
            for ref in refs:
                self.ids.pop(ref[1])
            forgotten += len(refs)
        return forgotten

    # -- outside agents (HTTP queries) ----------------------------------------------------------------
    def lookup(self, event_id: str) -> FoundEvent | None:
        """Where an event is, if one of the locally assigned partitions indexed it."""
        found = self.ids.locate(event_id)
        if found is None:
            return None
        partition, location = found
        offset, time_ms, type_name, subject, name = _parse_location(location)
        return FoundEvent(event_id, partition, offset, time_ms, type_name or EVENT_TYPE, subject, name)

    def find_events(self, *, subject: str = "*", name: str = "*", since_ms: int, until_ms: int, limit: int,
                    waiting: Iterable[tuple[str, str, Iterable[EventRef]]] = ()) -> list[FoundEvent]:
        """Events of matching identities with since_ms <= time <= until_ms in the local partitions,
        newest first, at most `limit`. `waiting`: (subject, name, references) not yet in a page."""
        match_subject, match_name = glob_matcher(subject), glob_matcher(name)
        prefix = key_prefix(subject, name, separator=IDENTITY_SEP)
        candidates: list[tuple[int, str]] = []
        pages = ((page_subject, page_name, refs) for partition in self.find.partitions()
                 for _, (page_subject, page_name, refs) in self.find.scan(partition, since_ms=since_ms, prefix=prefix))
        for ref_subject, ref_name, refs in itertools.chain(pages, waiting):
            if match_subject(ref_subject) and match_name(ref_name):
                candidates += [(ref[0], ref[1]) for ref in refs if since_ms <= ref[0] <= until_ms]
        candidates.sort(reverse=True)
        found = []
        for _, event_id in candidates[:limit]:
            event = self.lookup(event_id)
            if event is not None:
                found.append(event)
        return found
