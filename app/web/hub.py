"""Where the tailers' batches meet the server (on its event loop): the status index, the silences, the
live ring, and the stream clients waiting for news.

`apply` is the only writer of all three, and runs on the event loop (tailers hand their batches
over with `submit`), so request handlers read them without locks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.rules.silences import SilenceSet
from app.web.ingest import IngestBatch
from app.web.live import LiveRing
from app.web.statusindex import StatusIndex

__all__ = ["LiveHub"]

log = logging.getLogger(__name__)


class LiveHub:
    """The live state the API serves and the stream publishes."""

    def __init__(self, ring: LiveRing, index: StatusIndex | None = None, silences: SilenceSet | None = None) -> None:
        self.ring = ring
        self.index = index if index is not None else StatusIndex()
        self.silences = silences if silences is not None else SilenceSet()
        #: True once the status and silences topics were read to where they were at the start
        self.ready = False
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop `submit` hands batches to."""
        self._loop = loop

    def submit(self, batch: IngestBatch) -> None:
        """Hand a tailer's batch to the event loop (any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.apply, batch)
        except RuntimeError:  # the loop is shutting down
            pass

    def apply(self, batch: IngestBatch) -> None:
        """Apply one batch (event loop only) and wake the stream clients."""
        ring, index = self.ring, self.index
        live = batch.live and self.ready
        for subject, name, record in batch.statuses:
            if live:
                item = ring.append("status", _status_event(subject, name, record, ring.seq + 1))
                index.apply(subject, name, record, item.seq)
            else:
                index.apply(subject, name, record, ring.seq)
        for key, value in batch.silences:
            self.silences.apply(key, value)
            if live:
                silence = self.silences.all()
                current = next((s.to_dict() for s in silence if s.id == key), None)
                ring.append("silence", {"id": key, "silence": current})
        for kind, record in batch.changes:
            ring.append(kind, record)
        if batch.live and not self.ready:
            self.ready = True
            self.silences.ready.set()
            ring.append("reset", {"reason": "the server has read the current status of every identity"})
            log.info("ui: %d identities, %d silences known; live", len(index), len(self.silences))
        self.wake()

    def wake(self) -> None:
        for event in self._waiters:
            event.set()

    def waiter(self) -> asyncio.Event:
        """An event set whenever something new is in the ring (remove it with `forget`)."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    @property
    def clients(self) -> int:
        return len(self._waiters)


def _status_event(subject: str, name: str, record: dict[str, Any] | None, rev: int) -> dict[str, Any]:
    if record is None:
        return {"subject": subject, "name": name, "deleted": True, "rev": rev}
    return {**record, "rev": rev}
