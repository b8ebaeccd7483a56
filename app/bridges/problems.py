"""What a bridge's dependencies (Kafka, the schema registry) are failing with right now, for
/healthz: a failure is kept (with when it began) until that dependency answers again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KAFKA", "REGISTRY", "Problems"]

KAFKA = "Kafka"
REGISTRY = "schema registry"


@dataclass
class _Problem:
    text: str
    since_s: float
    #: what the failure was about (e.g. a schema's name): only a success about the same clears it
    about: str


class Problems:
    """The current failure per dependency. Thread-safe (senders and delivery reports report)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._current: dict[str, _Problem] = {}
        self._lock = threading.Lock()

    def failed(self, dependency: str, text: str, *, about: str = "") -> None:
        """`dependency` failed; an ongoing failure keeps its start time."""
        now = self._clock()
        with self._lock:
            old = self._current.get(dependency)
            self._current[dependency] = _Problem(text, old.since_s if old else now, about)

    def cleared(self, dependency: str, *, about: str = "") -> None:
        """`dependency` answered: about everything (`about` empty: it was asked and answered), or
        only about `about` (a failure about anything else stays)."""
        if not self._current:  # the usual case, on every record: no lock
            return
        with self._lock:
            old = self._current.get(dependency)
            if old is not None and (not about or old.about == about):
                del self._current[dependency]

    def lines(self) -> list[str]:
        """One line per failing dependency, with how long it has been failing."""
        now = self._clock()
        with self._lock:
            current = sorted(self._current.items())
        return [f"{dependency}: {p.text} (for {now - p.since_s:.0f} s)" for dependency, p in current]
