"""Tails the compacted `status` topic into a DependencyView (a background thread in every worker).

The rules stage is partitioned by group key, and a dependency's status is folded on whichever
partition its identity hashes to, so no partition can see it in its own state. Like silences
(app.rules.silence_reader), the rows dependency decisions need are a global view every worker
reads in full from a compacted topic, here `status`, keeping only what the view wants (identities
some `depends_on` selects, and identities that are not OK).

When the declarations' selectors change (a reload), rows the old ones dropped may now be needed:
the topic is read again from the beginning into a fresh set of rows, which replaces the view's
once caught up (the old rows serve meanwhile).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Message

from app.bus.compacted import CompactedReader
from app.config import Settings
from app.model.serde import AvroSerde, DecodeError
from app.registry.client import RegistryClient
from app.rules.inhibit import DependencyView, status_row

__all__ = ["STATUS_TOPIC", "DependencyStatusReader"]

log = logging.getLogger(__name__)

STATUS_TOPIC = "status"


class DependencyStatusReader(CompactedReader):
    """Keeps `view` up to date with `status`; `view.ready` is set once caught up."""

    stale_while_down = ", dependency states are not updated meanwhile"

    def __init__(self, settings: Settings, view: DependencyView, *, poll_s: float = 0.2) -> None:
        self.view = view
        self._serde = AvroSerde(RegistryClient.from_settings(settings))
        self._reread = threading.Event()
        self._fresh: dict[str, dict[str, Any]] | None = None  # rows of a read from the beginning
        super().__init__(settings, settings.topic(STATUS_TOPIC), ready=view.ready, poll_s=poll_s,
                         consumer_prefix="vigil-dependencies")

    def request_reread(self) -> None:
        """Read the topic again from the beginning (the declarations' selectors changed)."""
        self._reread.set()

    def reset(self) -> None:
        self._fresh = {}

    def poll_once(self) -> None:
        if self._reread.is_set() and self._consumer is not None:
            self._reread.clear()
            self.close()  # the next connect reads from the beginning (reset)
        super().poll_once()

    def _note_caught_up(self) -> None:
        if not self._catch_up and self._fresh is not None:
            self.view.replace(self._fresh)
            self._fresh = None
        super()._note_caught_up()

    def apply(self, msg: Message) -> None:
        key = (msg.key() or b"").decode("utf-8", "replace")
        raw = msg.value()
        record: dict[str, Any] | None = None
        if raw is not None:
            try:
                record = self._serde.decode_typed(raw)[1]
            except DecodeError as exc:  # bad for good: skip it (a registry blip raises: read again later)
                log.warning("%s: cannot read the status of %r at offset %s: %s", self.topic, key, msg.offset(), exc)
                return
        if self._fresh is not None:
            if record is None:
                self._fresh.pop(key, None)
            else:
                row = status_row(record)
                if self.view.wants(row):
                    self._fresh[key] = row
                else:
                    self._fresh.pop(key, None)
            return
        self.view.apply(key, record)

    def caught_up_line(self) -> str:
        return f"dependencies: {len(self.view)} status row(s) kept from {self.topic}"
