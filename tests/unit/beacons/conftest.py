"""Factories for beacon tests: a check context, a collecting publisher, a fake sink, a spool."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.beacons.base import BeaconContext
from app.beacons.publisher import DeliveryCallback, EventRejected, SinkUnavailable
from app.beacons.spool import Spool
from app.model.events import Event

T0_MS = 1_700_000_000_000


class CollectingPublisher:
    """A Publisher that keeps what it is given (thread-safe reads for wait_until)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self.closed = False

    def publish(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def close(self, timeout_s: float = 10.0) -> None:
        self.closed = True

    def named(self, name: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.name == name]


class FakeSink:
    """An EventSink whose far end is up or down at the test's command; deliveries settle on
    poll/flush (like librdkafka's reports)."""

    def __init__(self) -> None:
        self.up = True
        self.refuse = False  # send() itself fails (like a registry that cannot be reached)
        self.reject_names: set[str] = set()
        self.delivered: list[Event] = []
        self.closed = False
        self._pending: list[tuple[Event, DeliveryCallback]] = []
        self._lock = threading.Lock()

    def send(self, event: Event, on_done: DeliveryCallback) -> None:
        if event.name in self.reject_names:
            raise EventRejected(f"{event.name} does not encode")
        if self.refuse:
            raise SinkUnavailable("registry unreachable")
        with self._lock:
            self._pending.append((event, on_done))

    def _settle(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for event, on_done in pending:
            if self.up:
                self.delivered.append(event)
                on_done(event, None)
            else:
                on_done(event, "Local: Message timed out")

    def poll(self, timeout_s: float) -> None:
        self._settle()

    def flush(self, timeout_s: float) -> None:
        self._settle()

    def reachable(self, timeout_s: float) -> bool:
        return self.up and not self.refuse

    def close(self, timeout_s: float) -> None:
        self._settle()
        self.closed = True

    @property
    def pending(self) -> int:
        return len(self._pending)


@pytest.fixture
def make_ctx() -> Callable[..., BeaconContext]:
    """Factory: a BeaconContext for subject 'web1' at a fixed time."""

    def make(beacon: str = "test", now_ms: int = T0_MS, tags: dict[str, str] | None = None) -> BeaconContext:
        return BeaconContext(subject="web1", beacon=beacon, now_ms=now_ms, tags=tags or {"role": "web"})

    return make


@pytest.fixture
def publisher() -> CollectingPublisher:
    return CollectingPublisher()


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def make_spool(tmp_path: Path) -> Iterator[Callable[..., Spool]]:
    """Factory: a Spool in the test's temp dir (closed at the end)."""
    opened: list[Spool] = []

    def make(max_events: int = 1000, max_bytes: int = 10**7, directory: Path | None = None) -> Spool:
        spool = Spool(directory or tmp_path / "spool", max_events=max_events, max_bytes=max_bytes)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


def ev(name: str = "load", seq: int = 0, **fields: object) -> Event:
    """A small event whose metric `seq` tells the order it was made in."""
    return Event(subject="web1", name=name, metrics={"seq": float(seq)}, **fields)
