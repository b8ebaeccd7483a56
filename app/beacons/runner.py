"""The beacon runner: every beacon at its interval, in one thread, sleeping until the next is due.

A beacon that raises (or reports unreadable items through ctx.problem) produces a STATUS event
about itself (`beacon:<name>`, CRITICAL, with the error) and is simply run again at its next
interval; an OK `beacon:<name>` follows when it works again. One beacon failing never stops the
others. Runs are spread with a little jitter so a fleet of hosts does not report in lockstep.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import select
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.beacons.base import Beacon, BeaconContext, describe_error
from app.beacons.publisher import RUNNER_EVENT_NAME, Publisher
from app.durations import format_duration_ms
from app.model.events import Event, Kind, Severity, now_ms

__all__ = ["Runner", "StopSignal", "failure_event"]

log = logging.getLogger(__name__)

#: Jitter of each run: ± this fraction of the interval, at most MAX_JITTER_MS.
JITTER_FRACTION = 0.05
MAX_JITTER_MS = 1_000


class StopSignal:
    """A stop flag the runner sleeps on; `set()` is safe from a signal handler (a pipe write,
    no locks), unlike threading.Event.set()."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._set = False

    def set(self) -> None:
        """Ask the runner to stop (idempotent)."""
        self._set = True
        try:
            os.write(self._write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe already holds a wake-up, or is closed: the flag is what counts

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout_s: float | None) -> bool:
        """Sleep up to `timeout_s` (None: forever) or until set; returns whether it is set."""
        if not self._set:
            select.select([self._read_fd], [], [], timeout_s)
        return self._set

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def failure_event(ctx: BeaconContext, problem: str | None) -> Event:
    """STATUS `beacon:<name>` about the beacon itself: CRITICAL with the problem, or OK (recovered)."""
    if problem is None:
        return ctx.event(f"beacon:{ctx.beacon}", severity=Severity.OK, text=f"beacon {ctx.beacon} works again",
                         tags={"beacon": ctx.beacon, "state": "ok"})
    return ctx.event(f"beacon:{ctx.beacon}", severity=Severity.CRITICAL,
                     text=f"beacon {ctx.beacon} failed (retried every interval): {problem}",
                     tags={"beacon": ctx.beacon, "state": "failing"})


@dataclass(order=True)
class _Slot:
    due: float
    order: int
    beacon: Beacon = field(compare=False)
    state: Any = field(default=None, compare=False)
    problem: str | None = field(default=None, compare=False)
    runs: int = field(default=0, compare=False)


class Runner:
    """Runs beacons and publishes their events (times are injectable for tests)."""

    def __init__(self, beacons: Sequence[Beacon], publisher: Publisher, *, subject: str,
                 tags: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = now_ms, rng: random.Random | None = None) -> None:
        names = [b.name for b in beacons]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two beacons named {', '.join(duplicates)}")
        self.beacons = list(beacons)
        self.publisher = publisher
        self.subject = subject
        self.tags = dict(tags or {})
        self._clock = clock
        self._wall_ms = wall_ms
        self._rng = rng or random.Random()
        self._slots = [_Slot(0.0, i, b) for i, b in enumerate(self.beacons)]
        self.events_published = 0

    # -- one beacon ----------------------------------------------------------------------------
    def _run_slot(self, slot: _Slot) -> list[Event]:
        """Run one beacon once; publish and return its events (a failure becomes an event)."""
        beacon = slot.beacon
        ctx = BeaconContext(subject=self.subject, beacon=beacon.name, now_ms=self._wall_ms(), tags=self.tags)
        events: list[Event] = []
        try:
            produced, new_state = beacon.check(ctx, slot.state)
            events = list(produced)
            slot.state = new_state
            problem = "; ".join(ctx.problems) or None
        except (Exception, SystemExit) as exc:  # SystemExit too: a plugin calling exit() must not stop us
            problem = describe_error(exc)
            if problem != slot.problem:  # the traceback helps a plugin author; OS errors say it all
                log.warning("beacon %s failed: %s", beacon.name, problem, exc_info=not isinstance(exc, OSError))
        slot.runs += 1
        if problem != slot.problem:  # report a failure when it starts or changes, and the recovery
            if problem is not None or slot.problem is not None:
                events.append(failure_event(ctx, problem))
                if problem is None:
                    log.info("beacon %s works again", beacon.name)
            slot.problem = problem
        for event in events:
            self.publisher.publish(event)
        self.events_published += len(events)
        return events

    def failing(self) -> list[str]:
        """Names of the beacons whose last run failed."""
        return [slot.beacon.name for slot in self._slots if slot.problem is not None]

    # -- all of them ---------------------------------------------------------------------------
    def announce(self) -> Event:
        """STATUS `beacon-runner`: started, with the beacons and their intervals."""
        ctx = BeaconContext(subject=self.subject, beacon="runner", now_ms=self._wall_ms(), tags=self.tags)
        listed = ", ".join(f"{b.name} every {format_duration_ms(b.interval_ms)}" for b in self.beacons)
        event = ctx.event(RUNNER_EVENT_NAME, severity=Severity.OK, kind=Kind.STATUS,
                          text=f"beacon runner started: {listed or 'no beacons'}",
                          tags={"change": "started"}, extended={"beacons": {b.name: b.interval_ms
                                                                            for b in self.beacons}})
        event = event.model_copy(update={"origin": RUNNER_EVENT_NAME})
        self.publisher.publish(event)
        self.events_published += 1
        return event

    def run_once(self) -> list[Event]:
        """Run every beacon one time, in order (`vigil beacon run --once`)."""
        events: list[Event] = []
        for slot in self._slots:
            events.extend(self._run_slot(slot))
        return events

    def run(self, stop: StopSignal) -> None:
        """Run until `stop` is set: first runs spread over a short jittered start, then each
        beacon every interval (± jitter); a run that falls behind is skipped, not caught up."""
        start = self._clock()
        heap = []
        for slot in self._slots:
            slot.due = start + self._rng.uniform(0, self._jitter_s(slot.beacon))
            heap.append(slot)
        heapq.heapify(heap)
        while heap and not stop.is_set():
            slot = heap[0]
            wait_s = slot.due - self._clock()
            if wait_s > 0:
                stop.wait(wait_s)
                continue
            heapq.heappop(heap)
            self._run_slot(slot)
            interval_s = slot.beacon.interval_ms / 1000
            jitter_s = self._jitter_s(slot.beacon)
            slot.due += interval_s + self._rng.uniform(-jitter_s, jitter_s)
            now = self._clock()
            if slot.due <= now:  # the run took longer than the interval (or the host slept)
                slot.due = now + interval_s
            heapq.heappush(heap, slot)

    @staticmethod
    def _jitter_s(beacon: Beacon) -> float:
        return min(beacon.interval_ms * JITTER_FRACTION, MAX_JITTER_MS) / 1000

    def close(self) -> None:
        """Free what beacons hold (HTTP clients)."""
        for beacon in self.beacons:
            if beacon.close is not None:
                try:
                    beacon.close()
                except Exception as exc:
                    log.warning("closing beacon %s: %s", beacon.name, describe_error(exc))
