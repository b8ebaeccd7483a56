"""Beacon building blocks: the Beacon the runner schedules, the context a check builds events
with, and the pure comparisons most built-ins share (state changes, thresholds → severity).

A beacon is split in two on purpose: reading the OS (`observe`) and deciding what changed
(`compare`). The comparison is a pure function of (previous state, present observation), so
"did it change / did it cross a threshold" is unit-tested with made-up observations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.model.events import Event, Kind, Severity

__all__ = [
    "Beacon",
    "BeaconContext",
    "CheckFn",
    "Memo",
    "Reading",
    "Thresholds",
    "Unreadable",
    "describe_error",
    "graded",
    "observing",
    "report",
    "status_changes",
]

ObservationT = TypeVar("ObservationT")
StateT = TypeVar("StateT")

#: (context, what the beacon remembered last time or None) -> (events, what to remember now)
CheckFn = Callable[["BeaconContext", Any], tuple[list[Event], Any]]


@dataclass
class Beacon:
    """A check the runner calls every `interval_ms`.

    `check(ctx, previous_state)` returns the events to publish and the state to hand it next
    time (None the first time). When it raises, the runner reports a failure of this beacon and
    keeps the previous state, so the next run compares against the last good observation.
    `close` frees what the beacon holds (an HTTP client) when the runner stops.
    """

    name: str
    interval_ms: int
    check: CheckFn
    close: Callable[[], None] | None = None
    description: str = ""


@dataclass
class BeaconContext:
    """What a check gets: who the events are about, the common tags and the time of this run.

    `problem()` records that one watched item could not be read (a permission error, a missing
    mount): the runner reports it as a failure of this beacon while its other items carry on.
    """

    subject: str
    beacon: str
    now_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"beacon:{self.beacon}"

    def event(self, name: str, *, kind: Kind = Kind.STATUS, severity: int = Severity.OK, text: str = "",
              tags: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
              ttl: float | None = None, extended: dict[str, Any] | None = None) -> Event:
        """An event about this subject; the configured tags are added, the event's own tags win."""
        return Event(subject=self.subject, name=name, kind=kind, severity=int(severity), origin=self.origin,
                     text=text, tags={**self.tags, **(tags or {})}, metrics=dict(metrics or {}), ttl=ttl,
                     extended=extended, time=self.now_ms)

    def problem(self, item: str, error: BaseException | str) -> None:
        """Record that `item` could not be read this time (reported about the beacon itself)."""
        self.problems.append(f"{item}: {describe_error(error)}")


def describe_error(error: BaseException | str) -> str:
    """An exception as a person reads it: 'PermissionError: [Errno 13] Permission denied: ...'."""
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class Unreadable:
    """An observation slot that could not be read this time, with the reason."""

    error: str


def observing(observe: Callable[[BeaconContext], ObservationT],
              compare: Callable[[BeaconContext, StateT | None, ObservationT], tuple[list[Event], StateT]],
              ) -> CheckFn:
    """A check made of an OS read and a pure comparison with what was seen last time."""

    def check(ctx: BeaconContext, previous: StateT | None) -> tuple[list[Event], StateT]:
        return compare(ctx, previous, observe(ctx))

    return check


@dataclass(frozen=True)
class Thresholds:
    """Levels where a value (higher is worse) becomes WARNING or CRITICAL.

    `hysteresis` keeps a level until the value has dropped that far below it, so a value hovering
    around a threshold does not flap between severities.
    """

    warning: float | None = None
    critical: float | None = None
    hysteresis: float = 0.0

    def _level(self, value: float, slack: float) -> Severity:
        if self.critical is not None and value >= self.critical - slack:
            return Severity.CRITICAL
        if self.warning is not None and value >= self.warning - slack:
            return Severity.WARNING
        return Severity.OK

    def severity(self, value: float, previous: int = Severity.OK) -> Severity:
        """Severity of `value`, given the severity the previous value had."""
        rising = self._level(value, 0.0)
        if previous == Severity.UNKNOWN or rising >= previous:
            return rising
        return Severity(min(int(previous), int(self._level(value, self.hysteresis))))

    def describe(self, severity: Severity, unit: str = "") -> str:
        """'(warning at 85%)'-style note for the level that applies, or '' when OK."""
        level = {Severity.WARNING: self.warning, Severity.CRITICAL: self.critical}.get(severity)
        if level is None:
            return ""
        return f" ({severity.name.lower()} at {level:g}{unit})"


@dataclass(frozen=True)
class Reading:
    """One watched item's present state as a beacon sees it.

    A change of `state` between two runs is what produces a STATUS event; `metrics` (if any) are
    also sampled as a METRIC event every run.
    """

    state: str
    severity: Severity = Severity.OK
    text: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    extended: dict[str, Any] | None = None


def status_changes(ctx: BeaconContext, previous: Mapping[str, Reading] | None,
                   current: Mapping[str, Reading]) -> list[Event]:
    """A STATUS event for every item seen for the first time or whose state changed."""
    events = []
    for name, reading in current.items():
        before = previous.get(name) if previous else None
        if before is not None and before.state == reading.state:
            continue
        tags = {**reading.tags, "state": reading.state}
        if before is not None:
            tags["previous"] = before.state
        events.append(ctx.event(name, kind=Kind.STATUS, severity=reading.severity, text=reading.text, tags=tags,
                                metrics=reading.metrics, extended=reading.extended))
    return events


def report(ctx: BeaconContext, previous: Mapping[str, Reading] | None, current: Mapping[str, Reading], *,
           unreadable: Iterable[str] = (), sample: bool = True) -> tuple[list[Event], dict[str, Reading]]:
    """Status changes plus (if `sample`) a METRIC sample of every reading that has metrics.

    Items named in `unreadable` could not be read this time: they produce no event and keep their
    previous reading, so the next good read is compared with the last good one.
    Returns the events and the readings to remember (the state for the next comparison).
    """
    events = status_changes(ctx, previous, current)
    if sample:
        events.extend(ctx.event(name, kind=Kind.METRIC, severity=r.severity, metrics=r.metrics, tags=r.tags)
                      for name, r in current.items() if r.metrics)
    state = dict(current)
    for name in unreadable:
        if previous and name in previous:
            state[name] = previous[name]
    return events, state


def graded(thresholds: Thresholds, value: float, previous: Mapping[str, Reading] | None, name: str) -> Severity:
    """Severity of `value` for item `name`, with hysteresis from the item's previous reading."""
    before = previous.get(name) if previous else None
    return thresholds.severity(value, before.severity if before else Severity.OK)


@dataclass(frozen=True)
class Memo(Generic[ObservationT]):
    """What a rate-computing beacon (cpu, net) remembers: the raw observation and its readings."""

    observation: ObservationT
    readings: dict[str, Reading]
