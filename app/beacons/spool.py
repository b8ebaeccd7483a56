"""A bounded on-disk FIFO of events waiting for Kafka (sqlite3 from the stdlib, one file).

Events are kept as JSON of the pydantic Event (not as Avro bytes), so they survive a schema
registry that is unreachable too, and are encoded when they are finally sent.

Bound: at most `max_events` events and `max_bytes` bytes of JSON. Past it the OLDEST events are
dropped: what a host looks like now (its latest states, heartbeats and samples) matters more than
its oldest samples, and rules act on the present. Every drop is counted; the counts of an outage
(spooled, delivered, dropped) are kept in the file too, so they are reported even when the runner
restarted in between.

One runner per spool: the file is locked while open (a second runner gets a clear error).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.model.events import Event

__all__ = ["Spool", "SpoolError", "SpoolStats"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Counters of the current outage ("episode"): reset when it is reported.
_COUNTERS = ("spooled", "delivered", "dropped")


class SpoolError(Exception):
    """The spool cannot be opened (locked by another runner, not writable); says what to do."""


@dataclass(frozen=True)
class SpoolStats:
    """Counts of one outage plus what waits now, and the bound."""

    spooled: int
    delivered: int
    dropped: int
    pending: int
    pending_bytes: int
    max_events: int
    max_bytes: int


class Spool:
    """Append at the tail, read and remove at the head; not thread-safe (one owner thread)."""

    FILE_NAME = "spool.sqlite3"

    def __init__(self, directory: Path, *, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("a spool bound must be at least 1 event and 1 byte")
        self.directory = Path(directory)
        self.max_events = max_events
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolError(f"spool directory {self.directory} is in use by another beacon runner; "
                             f"give each runner its own spool.dir") from None
        # check_same_thread=False: the owner thread may differ from the thread that opened it.
        self._db = sqlite3.connect(self.directory / self.FILE_NAME, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; one fsync per checkpoint
        self._db.execute("PRAGMA cache_size=-512")  # KiB: a FIFO read once needs little cache; RSS counts
        self._db.executescript(_SCHEMA)
        self._count, self._bytes = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()

    # -- queue ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, event: Event) -> None:
        """Keep an event at the tail; drop the oldest ones past the bound (counted)."""
        data = event.model_dump_json()
        size = len(data.encode())
        with self._db:
            self._db.execute("BEGIN")
            if size > self.max_bytes:  # it could never fit: keeping it would evict everything else
                log.warning("spool: event %s/%s (%d bytes) is larger than the whole bound of %d bytes; dropped",
                            event.subject, event.name, size, self.max_bytes)
                self._bump("dropped", 1)
                return
            self._db.execute("INSERT INTO events (size, data) VALUES (?, ?)", (size, data))
            self._count += 1
            self._bytes += size
            self._bump("spooled", 1)
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        excess_events = self._count - self.max_events
        excess_bytes = self._bytes - self.max_bytes
        if excess_events <= 0 and excess_bytes <= 0:
            return
        dropped, freed = 0, 0
        oldest = self._db.execute("SELECT size FROM events ORDER BY seq")
        for (size,) in oldest:
            if dropped >= excess_events and freed >= excess_bytes:
                break
            dropped += 1
            freed += size
        oldest.close()
        self._db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (dropped,))
        self._count -= dropped
        self._bytes -= freed
        self._bump("dropped", dropped)
        log.warning("spool full (%d events / %d bytes max): dropped the %d oldest event(s)",
                    self.max_events, self.max_bytes, dropped)

    def peek(self, limit: int) -> list[tuple[int, Event]]:
        """Up to `limit` oldest events with their sequence numbers (unreadable rows are dropped)."""
        rows = self._db.execute("SELECT seq, data FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        out, broken = [], []
        for seq, data in rows:
            try:
                out.append((seq, Event.model_validate_json(data)))
            except ValidationError as exc:
                log.error("spool: dropping unreadable event #%d: %s", seq, exc.errors()[0]["msg"])
                broken.append(seq)
        if broken:
            self._remove(broken, counter="dropped")
        return out

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget events that were delivered (counted as delivered)."""
        self._remove(list(seqs), counter="delivered")

    def discard(self, seqs: Iterable[int]) -> None:
        """Forget events that can never be delivered (counted as dropped)."""
        self._remove(list(seqs), counter="dropped")

    def _remove(self, seqs: list[int], *, counter: str) -> None:
        if not seqs:
            return
        with self._db:
            self._db.execute("BEGIN")
            marks = ",".join("?" * len(seqs))
            size = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE seq IN ({marks})",
                                    seqs).fetchone()
            self._db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
            self._count -= size[0]
            self._bytes -= size[1]
            self._bump(counter, size[0])

    # -- counters ------------------------------------------------------------------------------------
    def _bump(self, name: str, by: int) -> None:
        if by:
            self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                             "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def stats(self) -> SpoolStats:
        """This outage's counts and what waits now."""
        values = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        spooled, delivered, dropped = (int(values.get(c, 0)) for c in _COUNTERS)
        return SpoolStats(spooled, delivered, dropped, pending=self._count, pending_bytes=self._bytes,
                          max_events=self.max_events, max_bytes=self.max_bytes)

    def take_stats(self) -> SpoolStats:
        """This outage's counts, then start counting the next one from zero."""
        stats = self.stats()
        with self._db:
            self._db.execute("DELETE FROM counters")
        return stats

    def close(self) -> None:
        """Close the file and release the lock (safe to call twice)."""
        if self._lock_fd < 0:
            return
        self._db.close()
        os.close(self._lock_fd)
        self._lock_fd = -1
