"""Which topics exist, so a route to a missing topic is counted and skipped instead of failing the
worker's deliveries (a record to a topic that does not exist fails only after librdkafka's metadata
wait, and a failed delivery makes the worker rewind).

The Kafka catalog asks the cluster for its topic names in a background thread every `refresh_s`;
lookups read the last answer and never block. Until the first answer (Kafka unreachable at start)
every topic counts as present: the worker's own retries then handle the outage.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final, Protocol

from app.bus.clients import make_admin
from app.config import Settings

__all__ = ["REFRESH_S", "FixedCatalog", "KafkaTopicCatalog", "TopicCatalog"]

log = logging.getLogger(__name__)

#: How often the topic names are read again (a topic created meanwhile is used from then on).
REFRESH_S: Final = 10.0
_LIST_TIMEOUT_S: Final = 10.0


class TopicCatalog(Protocol):
    """Topic names of the cluster, as last seen."""

    def topics(self) -> frozenset[str] | None:
        """The real topic names, or None while unknown."""
        ...

    def close(self) -> None:
        """Stop reading (idempotent)."""
        ...


class FixedCatalog:
    """A catalog of given names (offline tools, tests of the stage's logic)."""

    def __init__(self, names: frozenset[str] | None) -> None:
        self.names = names

    def topics(self) -> frozenset[str] | None:
        """The given names."""
        return self.names

    def close(self) -> None:
        """Nothing to stop."""


class KafkaTopicCatalog:
    """The cluster's topic names, read now and then every `refresh_s` in a daemon thread."""

    def __init__(self, settings: Settings, *, refresh_s: float = REFRESH_S) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self._names: frozenset[str] | None = None
        self._stop = threading.Event()
        self._admin: Any = make_admin(settings)
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="routes-topic-catalog", daemon=True)
        self._thread.start()

    def topics(self) -> frozenset[str] | None:
        """The real topic names of the last answer (None: no answer yet)."""
        return self._names

    def refresh(self) -> None:
        """Ask the cluster now; a failure keeps the last answer (logged once per failure spell)."""
        admin = self._admin
        if admin is None:
            return
        try:
            md = admin.list_topics(timeout=_LIST_TIMEOUT_S)
        except Exception as exc:  # KafkaException: unreachable; retried at the next refresh
            log.debug("routes: cannot list topics now (%s); using the last answer", exc)
            return
        self._names = frozenset(name for name, t in md.topics.items() if t.error is None)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def close(self) -> None:
        """Stop the thread and let go of the admin client."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_LIST_TIMEOUT_S + 1)
        self._admin = None
