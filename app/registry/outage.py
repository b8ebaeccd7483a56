"""Whether the registry's Kafka is known to be unreachable: since when, why, and who checks next.

Pure bookkeeping (the caller passes the time), thread-safe: while an outage is known, reads are
answered from memory without waiting, and only one of them at a time, every `recheck_s`, checks
whether Kafka is back.
"""

from __future__ import annotations

import threading

__all__ = ["Outage"]


class Outage:
    """The state of one store's connection to Kafka, as last observed."""

    def __init__(self, recheck_s: float = 1.0) -> None:
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._reason: str | None = None
        self._next_check_at = 0.0
        self._checking = False

    @property
    def reason(self) -> str | None:
        """Why Kafka was last found unreachable (None while it answers)."""
        return self._reason

    def is_down(self) -> bool:
        """Is an outage known?"""
        return self._since is not None

    def down(self, reason: str, now: float) -> bool:
        """Kafka did not answer; True if this starts an outage (False if one was known)."""
        with self._lock:
            started = self._since is None
            if started:
                self._since = now
            self._reason = reason
            self._next_check_at = now + self.recheck_s
            return started

    def up(self, now: float) -> float | None:
        """Kafka answered; the seconds the outage lasted if this ends one, else None."""
        with self._lock:
            since, self._since, self._reason = self._since, None, None
            return None if since is None else now - since

    def may_check(self, now: float) -> bool:
        """Should the caller ask Kafka? Always without a known outage; during one, True for one
        caller at a time once `recheck_s` has passed (it must call `checked()` afterwards)."""
        with self._lock:
            if self._since is None:
                return True
            if self._checking or now < self._next_check_at:
                return False
            self._checking = True
            return True

    def checked(self) -> None:
        """The caller that may_check let through is done."""
        with self._lock:
            self._checking = False
