"""Status folding: the current status of an identity from the severity of its events, its alerts,
and absence (ttl) expiry. Pure: the status agent keeps `StatusState.to_dict()` in a table, arms a
timer at `state.expected_by_ms`, and publishes what `StatusUpdate` says.

Rules (in the order they apply to one event):

1. Duplicate: an event whose id is the last applied one changes nothing (at-least-once delivery
   redelivers; folding it twice would double-count and could re-alert).
2. Stale: an event older than `last_seen_ms` counts (`event_count`) but changes nothing else. The
   agent applies events within the grace period in event-time order; one that arrives later than
   that is history, and letting it win would regress the current state. Its ttl is ignored too:
   the newer event already kept its promise.
3. Otherwise the event is applied: severity 0/1/2/3 gives OK/WARNING/CRITICAL/UNKNOWN; an event
   without a severity (None) leaves the reported state as it is (OK for a first sighting) but still
   clears EXPIRED. last_seen, last event id, text, tags and ttl follow the event.
4. Alerts (the issue's rule, exactly): every transition (a change of state of a known identity,
   including to and from EXPIRED) produces one Alert, and so does an event with non-zero severity
   when the identity is not already in that state -- which, beyond transitions, is the first
   sighting of an identity in a non-OK state (from_state "NONE"). A first sighting in OK is not an
   alert. A repeated CRITICAL is not an alert.
5. Absence: an event with a ttl promises another within ttl seconds; `expected_by_ms` records the
   deadline. `expire(state, deadline_ms=...)` turns the identity EXPIRED once per silence: it is a
   no-op when the identity is already EXPIRED or when the deadline the timer was armed for is no
   longer the current one (a newer event moved it).

`transition_count` counts changes of state of a known identity (a first sighting is not one).
`changed` in StatusUpdate means the published Status should be re-sent: first sighting, a new
state, or flapping starting/stopping. Alert ids derive from (subject, name, cause event id, new
state), so a replay of the same events produces identical alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from app.durations import format_duration_ms
from app.model.events import Severity, State
from app.model.ids import deterministic_id
from app.pipeline.flap import FlapPolicy, is_flapping, record_transition
from app.pipeline.validate import NormalizedEvent, format_time_ms

__all__ = ["NO_STATE", "StatusState", "StatusUpdate", "alert_id", "copy_status", "expire", "fold_into", "fold_status",
           "to_status_record"]

#: `from_state` of the alert for the first sighting of an identity.
NO_STATE: Final = "NONE"
_STATE_BY_SEVERITY: Final = tuple(State[s.name].value for s in sorted(Severity))
_STATE_SEVERITY: Final = {state: severity for severity, state in enumerate(_STATE_BY_SEVERITY)}
_OK: Final = State.OK.value
_EXPIRED: Final = State.EXPIRED.value
#: The alert severity of an expiry: we no longer know the identity's state.
_EXPIRY_SEVERITY: Final = int(Severity.UNKNOWN)


@dataclass(slots=True)
class StatusState:
    """Everything the status agent keeps per identity (JSON-serialisable via to_dict/from_dict).

    Treat a stored one as immutable (commits in progress keep references to stored values):
    `fold_status` returns new objects, and `fold_into` changes only a private `copy_status`."""

    subject: str
    name: str
    #: OK, WARNING, CRITICAL, UNKNOWN or EXPIRED
    state: str
    #: the state events last reported (never EXPIRED): where a severity-less event returns to
    reported_state: str
    since_ms: int
    last_seen_ms: int
    last_event_id: str = ""
    text: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    event_count: int = 0
    transition_count: int = 0
    flapping: bool = False
    #: times of the most recent transitions, oldest first (bounded; see app.pipeline.flap)
    recent_transitions_ms: tuple[int, ...] = ()
    ttl_s: float | None = None
    #: absence deadline: the next event is due by then; None when nothing is expected
    expected_by_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (the table value)."""
        return {
            "subject": self.subject,
            "name": self.name,
            "state": self.state,
            "reported_state": self.reported_state,
            "since_ms": self.since_ms,
            "last_seen_ms": self.last_seen_ms,
            "last_event_id": self.last_event_id,
            "text": self.text,
            "tags": self.tags,
            "event_count": self.event_count,
            "transition_count": self.transition_count,
            "flapping": self.flapping,
            "recent_transitions_ms": list(self.recent_transitions_ms),
            "ttl_s": self.ttl_s,
            "expected_by_ms": self.expected_by_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatusState:
        """Inverse of to_dict (fields added in later versions take their defaults)."""
        values = {k: v for k, v in data.items() if k in _FIELDS}
        values["recent_transitions_ms"] = tuple(values.get("recent_transitions_ms", ()))
        values.setdefault("reported_state", data["state"] if data["state"] != _EXPIRED else _OK)
        return cls(**values)


_FIELDS: Final = frozenset(StatusState.__dataclass_fields__)
#: a vigil.Alert record
Alert = dict[str, Any]


@dataclass(slots=True)
class StatusUpdate:
    """The outcome of folding one event (or one expiry) into an identity's status."""

    state: StatusState
    #: the published Status should be re-sent (first sighting, new state, flapping changed)
    changed: bool
    #: a vigil.Alert-shaped dict, or None
    alert: dict[str, Any] | None = None


def alert_id(subject: str, name: str, cause_event_id: str, to_state: str) -> str:
    """The deterministic id of the alert a cause produced: replays yield the same id."""
    return deterministic_id("vigil.Alert", subject, name, cause_event_id, to_state)


def fold_status(state: StatusState | None, ev: NormalizedEvent, *, flap: FlapPolicy) -> StatusUpdate:
    """Fold one event into the status of its identity (`state` None: first sighting). `state` is
    not changed: the update holds a new state (or `state` itself when the event changes nothing)."""
    if state is None:
        return _first_sighting(ev)
    new = copy_status(state)
    folded = fold_into(new, ev, flap=flap)
    if folded is None:
        return StatusUpdate(state, changed=False)
    return StatusUpdate(new, changed=folded[0], alert=folded[1])


def copy_status(state: StatusState) -> StatusState:
    """A private copy of a status, to fold events into in place (`fold_into`)."""
    s = state  # positional construction, in field order: once per identity and batch
    return StatusState(s.subject, s.name, s.state, s.reported_state, s.since_ms, s.last_seen_ms, s.last_event_id,
                       s.text, s.tags, s.event_count, s.transition_count, s.flapping, s.recent_transitions_ms,
                       s.ttl_s, s.expected_by_ms)


def fold_into(state: StatusState, ev: NormalizedEvent, *, flap: FlapPolicy) -> tuple[bool, Alert | None] | None:
    """Fold one event into a private `state` (see `copy_status`), in place: what `fold_status`
    does, without a new state per event. Returns None for a duplicate (nothing changed), else
    (whether the published Status should be re-sent, the alert or None)."""
    if ev.id == state.last_event_id:
        return None
    time_ms = ev.time_ms
    if time_ms < state.last_seen_ms:
        state.event_count += 1
        return False, None

    before, flapping_before = state.state, state.flapping
    reported = state.reported_state if ev.severity is None else _STATE_BY_SEVERITY[ev.severity]
    transition = reported != before
    if transition:
        recent = state.recent_transitions_ms = record_transition(state.recent_transitions_ms, time_ms, flap)
        state.flapping = is_flapping(flapping_before, recent, time_ms, flap)
        state.since_ms = time_ms
        state.transition_count += 1
    elif flapping_before:
        # without a transition flapping can only end (as recorded transitions age out of the window)
        state.flapping = is_flapping(True, state.recent_transitions_ms, time_ms, flap)
    state.state = state.reported_state = reported
    state.last_seen_ms = time_ms
    state.last_event_id = ev.id
    state.text = ev.text
    state.tags = dict(ev.tags)
    state.event_count += 1
    state.ttl_s = ev.ttl_s
    state.expected_by_ms = _deadline_ms(ev)
    if transition:
        return True, _event_alert(state, ev, from_state=before)
    return state.flapping != flapping_before, None


def expire(state: StatusState, *, deadline_ms: int, flap: FlapPolicy) -> StatusUpdate:
    """The absence timer armed for `deadline_ms` fired: mark the identity EXPIRED, once per silence.

    A no-op when the identity is already EXPIRED, or when `deadline_ms` is not the current
    `expected_by_ms` (a newer event moved or removed the deadline: that timer is stale).
    """
    if state.state == _EXPIRED or state.expected_by_ms is None or state.expected_by_ms != deadline_ms:
        return StatusUpdate(state, changed=False)
    recent = record_transition(state.recent_transitions_ms, deadline_ms, flap)
    new = _evolve(
        state,
        state=_EXPIRED,
        since_ms=deadline_ms,
        transition_count=state.transition_count + 1,
        flapping=is_flapping(state.flapping, recent, deadline_ms, flap),
        recent_transitions_ms=recent,
        expected_by_ms=None,
    )
    silence = format_duration_ms(deadline_ms - state.last_seen_ms)
    ttl = f" (ttl {format_duration_ms(round(state.ttl_s * 1000))})" if state.ttl_s else ""
    text = f"no event for {silence}{ttl} since {format_time_ms(state.last_seen_ms)}"
    # The cause of an expiry is the last event: its promise of another was broken. One silence
    # follows one last event, so the alert id is unique per silence and stable under replay.
    alert = _alert(new, from_state=state.state, time_ms=deadline_ms, severity=_EXPIRY_SEVERITY,
                   cause_event_id=state.last_event_id, text=text, trace_id=None)
    return StatusUpdate(new, changed=True, alert=alert)


def to_status_record(state: StatusState) -> dict[str, Any]:
    """The vigil.Status record of an identity (for the compacted `status` topic)."""
    return {
        "subject": state.subject,
        "name": state.name,
        "state": state.state,
        "since": state.since_ms,
        "last_seen": state.last_seen_ms,
        "last_event_id": state.last_event_id,
        "text": state.text,
        "event_count": state.event_count,
        "transition_count": state.transition_count,
        "flapping": state.flapping,
        "ttl": state.ttl_s,
        "tags": dict(state.tags),
    }


def _evolve(old: StatusState, /, **changes: Any) -> StatusState:
    """A copy of `old` with some fields changed (dataclasses.replace, minus its per-call checks)."""
    new = copy_status(old)
    for name, value in changes.items():
        setattr(new, name, value)
    return new



def _first_sighting(ev: NormalizedEvent) -> StatusUpdate:
    reported = _OK if ev.severity is None else _STATE_BY_SEVERITY[ev.severity]
    new = StatusState(
        subject=ev.subject,
        name=ev.name,
        state=reported,
        reported_state=reported,
        since_ms=ev.time_ms,
        last_seen_ms=ev.time_ms,
        last_event_id=ev.id,
        text=ev.text,
        tags=dict(ev.tags),
        event_count=1,
        ttl_s=ev.ttl_s,
        expected_by_ms=_deadline_ms(ev),
    )
    alert = _event_alert(new, ev, from_state=NO_STATE) if ev.severity else None
    return StatusUpdate(new, changed=True, alert=alert)


def _deadline_ms(ev: NormalizedEvent) -> int | None:
    return None if ev.ttl_s is None else ev.time_ms + round(ev.ttl_s * 1000)


def _event_alert(new: StatusState, ev: NormalizedEvent, *, from_state: str) -> dict[str, Any]:
    severity = ev.severity if ev.severity is not None else _STATE_SEVERITY.get(new.state, 0)
    return _alert(new, from_state=from_state, time_ms=ev.time_ms, severity=severity, cause_event_id=ev.id,
                  text=ev.text, trace_id=ev.trace_id)


def _alert(new: StatusState, *, from_state: str, time_ms: int, severity: int, cause_event_id: str, text: str,
           trace_id: str | None) -> dict[str, Any]:
    return {
        "id": alert_id(new.subject, new.name, cause_event_id, new.state),
        "time": time_ms,
        "subject": new.subject,
        "name": new.name,
        "from_state": from_state,
        "to_state": new.state,
        "severity": severity,
        "cause_event_id": cause_event_id,
        "text": text,
        "flapping": new.flapping,
        "tags": dict(new.tags),
        "trace_id": trace_id,
    }
