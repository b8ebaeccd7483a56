"""Status folding: states, alerts, counts, expiry once per silence, out-of-order and duplicate events."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline.flap import FlapPolicy
from app.pipeline.status import (
    NO_STATE,
    StatusState,
    alert_id,
    copy_status,
    expire,
    fold_into,
    fold_status,
    to_status_record,
)
from app.pipeline.validate import NormalizedEvent
from tests.unit.pipeline.conftest import NOW_MS

MakeEvent = Callable[..., NormalizedEvent]
#: Flapping needs more transitions than any table case below produces, so those cases test folding only.
CALM = FlapPolicy(window_ms=60_000, enter_transitions=50, exit_transitions=2)
S = 1000  # one second in ms, for readable times


@dataclass(frozen=True)
class Ev:
    """Step: an event with this severity at NOW + at_s seconds."""

    severity: int | None
    at_s: float = 0
    ttl_s: float | None = None
    id: str | None = None


@dataclass(frozen=True)
class Expire:
    """Step: the absence timer armed for NOW + deadline_s seconds fires."""

    deadline_s: float


@dataclass
class Run:
    state: StatusState
    alerts: list[dict[str, Any]]
    changed: list[bool]

    @property
    def transitions(self) -> list[tuple[str, str]]:
        return [(a["from_state"], a["to_state"]) for a in self.alerts]


def _event(step: Ev, n: int) -> NormalizedEvent:
    return NormalizedEvent(id=step.id or f"e{n}", type_name="vigil.Event", subject="web1", name="load",
                           time_ms=NOW_MS + round(step.at_s * S), kind="STATUS", severity=step.severity, metrics={},
                           ttl_s=step.ttl_s, text=f"step {n}", tags={"n": str(n)})


def run(steps: Sequence[Ev | Expire], *, flap: FlapPolicy = CALM) -> Run:
    """Fold the steps in order, through a JSON round trip of the state each time (as a table stores it)."""
    state: StatusState | None = None
    alerts: list[dict[str, Any]] = []
    changed: list[bool] = []
    for n, step in enumerate(steps, start=1):
        if isinstance(step, Ev):
            update = fold_status(state, _event(step, n), flap=flap)
        else:
            assert state is not None, "expire needs a state"
            update = expire(state, deadline_ms=NOW_MS + round(step.deadline_s * S), flap=flap)
        state = StatusState.from_dict(orjson.loads(orjson.dumps(update.state.to_dict())))
        assert state == update.state
        changed.append(update.changed)
        if update.alert is not None:
            alerts.append(update.alert)
    assert state is not None
    return Run(state, alerts, changed)


@pytest.mark.parametrize(
    ("steps", "transitions", "final_state"),
    [
        pytest.param([Ev(0)], [], "OK", id="first sighting OK: no alert"),
        pytest.param([Ev(2)], [(NO_STATE, "CRITICAL")], "CRITICAL", id="first sighting CRITICAL alerts from NONE"),
        pytest.param([Ev(1)], [(NO_STATE, "WARNING")], "WARNING", id="first sighting WARNING alerts from NONE"),
        pytest.param([Ev(3)], [(NO_STATE, "UNKNOWN")], "UNKNOWN", id="first sighting UNKNOWN alerts from NONE"),
        pytest.param([Ev(0), Ev(2, 1), Ev(0, 2)], [("OK", "CRITICAL"), ("CRITICAL", "OK")], "OK",
                     id="OK -> CRITICAL -> OK"),
        pytest.param([Ev(0), Ev(2, 1), Ev(2, 2), Ev(2, 3)], [("OK", "CRITICAL")], "CRITICAL",
                     id="repeated CRITICAL alerts once"),
        pytest.param([Ev(1), Ev(2, 1), Ev(1, 2)], [(NO_STATE, "WARNING"), ("WARNING", "CRITICAL"),
                                                   ("CRITICAL", "WARNING")], "WARNING",
                     id="WARNING <-> CRITICAL are transitions"),
        pytest.param([Ev(0), Ev(3, 1)], [("OK", "UNKNOWN")], "UNKNOWN", id="UNKNOWN is a state"),
        pytest.param([Ev(0), Ev(0, 1), Ev(0, 2)], [], "OK", id="repeated OK: nothing"),
        pytest.param([Ev(2), Ev(None, 1)], [(NO_STATE, "CRITICAL")], "CRITICAL",
                     id="an event without severity keeps the state"),
        pytest.param([Ev(None)], [], "OK", id="first sighting without severity is OK, no alert"),
        pytest.param([Ev(2, 10), Ev(0, 5)], [(NO_STATE, "CRITICAL")], "CRITICAL",
                     id="an older event does not regress the state"),
        pytest.param([Ev(0, 0, ttl_s=30), Expire(30)], [("OK", "EXPIRED")], "EXPIRED", id="silence expires"),
        pytest.param([Ev(0, 0, ttl_s=30), Expire(30), Expire(30)], [("OK", "EXPIRED")], "EXPIRED",
                     id="expiry once per silence"),
        pytest.param([Ev(0, 0, ttl_s=30), Expire(30), Ev(0, 40)], [("OK", "EXPIRED"), ("EXPIRED", "OK")], "OK",
                     id="next event clears EXPIRED with an alert"),
        pytest.param([Ev(2, 0, ttl_s=30), Expire(30), Ev(None, 40)],
                     [(NO_STATE, "CRITICAL"), ("CRITICAL", "EXPIRED"), ("EXPIRED", "CRITICAL")], "CRITICAL",
                     id="a severity-less event clears EXPIRED back to the reported state"),
        pytest.param([Ev(0, 0, ttl_s=30), Ev(0, 20, ttl_s=30), Expire(30)], [], "OK",
                     id="stale timer after the deadline moved is a no-op"),
        pytest.param([Ev(0, 0, ttl_s=30), Ev(0, 20), Expire(30)], [], "OK",
                     id="an event without ttl removes the deadline"),
        pytest.param([Ev(0, 0)], [], "OK", id="no ttl: nothing expected"),
        pytest.param([Ev(0, 10, ttl_s=30), Expire(40), Ev(2, 5)], [("OK", "EXPIRED")], "EXPIRED",
                     id="an older event does not clear EXPIRED"),
        pytest.param([Ev(0, 0, ttl_s=30), Expire(30), Ev(0, 40, ttl_s=30), Expire(70)],
                     [("OK", "EXPIRED"), ("EXPIRED", "OK"), ("OK", "EXPIRED")], "EXPIRED",
                     id="each silence expires once"),
        pytest.param([Ev(2, 0, id="x"), Ev(2, 0, id="x")], [(NO_STATE, "CRITICAL")], "CRITICAL",
                     id="a redelivered event is folded once"),
    ],
)
def test_fold__transitions_and_alerts(steps: list[Ev | Expire], transitions: list[tuple[str, str]],
                                      final_state: str) -> None:
    result = run(steps)
    assert result.transitions == transitions
    assert result.state.state == final_state


@pytest.mark.parametrize(
    ("steps", "event_count", "transition_count", "since_s", "last_seen_s"),
    [
        pytest.param([Ev(0)], 1, 0, 0, 0, id="first sighting"),
        pytest.param([Ev(0), Ev(2, 1), Ev(2, 2), Ev(0, 3)], 4, 2, 3, 3, id="two transitions"),
        pytest.param([Ev(0), Ev(0, 5), Ev(0, 9)], 3, 0, 0, 9, id="since stays at the first sighting"),
        pytest.param([Ev(0, 10), Ev(2, 5)], 2, 0, 10, 10, id="an older event counts but changes nothing else"),
        pytest.param([Ev(0, 0, id="x"), Ev(0, 0, id="x")], 1, 0, 0, 0, id="a duplicate does not count"),
        pytest.param([Ev(0, 0, ttl_s=30), Expire(30)], 1, 1, 30, 0, id="expiry is a transition, not an event"),
    ],
)
def test_fold__counts_and_times(steps: list[Ev | Expire], event_count: int, transition_count: int, since_s: float,
                                last_seen_s: float) -> None:
    state = run(steps).state
    assert (state.event_count, state.transition_count) == (event_count, transition_count)
    assert (state.since_ms, state.last_seen_ms) == (NOW_MS + since_s * S, NOW_MS + last_seen_s * S)


def test_fold__published_status_changes_on_first_sighting_and_transitions_only() -> None:
    assert run([Ev(0), Ev(0, 1), Ev(2, 2), Ev(2, 3), Ev(2, 1)]).changed == [True, False, True, False, False]


def test_fold__the_latest_event_sets_text_tags_id_and_ttl(make_event: MakeEvent) -> None:
    first = fold_status(None, make_event(0, ttl_s=30, text="fine", tags={"a": "1"}), flap=CALM).state
    state = fold_status(first, make_event(0, NOW_MS + 5 * S, id="e-last", text="still fine"), flap=CALM).state
    assert (state.last_event_id, state.text, state.tags, state.ttl_s, state.expected_by_ms) == (
        "e-last", "still fine", {}, None, None)
    assert first.expected_by_ms == NOW_MS + 30 * S


def test_fold__does_not_mutate_the_input_state(make_event: MakeEvent) -> None:
    state = fold_status(None, make_event(0), flap=CALM).state
    before = state.to_dict()
    fold_status(state, make_event(2, NOW_MS + S), flap=CALM)
    assert state.to_dict() == before


def test_alert__shape_and_fields(make_event: MakeEvent, assert_valid_record: Callable[..., None]) -> None:
    state = fold_status(None, make_event(0), flap=CALM).state
    ev = make_event(2, NOW_MS + S, id="cause", text="disk full", tags={"dc": "ams"}, trace_id="t1")
    alert = fold_status(state, ev, flap=CALM).alert
    assert alert == {
        "id": alert_id("web1", "load", "cause", "CRITICAL"), "time": NOW_MS + S, "subject": "web1", "name": "load",
        "from_state": "OK", "to_state": "CRITICAL", "severity": 2, "cause_event_id": "cause", "text": "disk full",
        "flapping": False, "tags": {"dc": "ams"}, "trace_id": "t1",
    }
    assert_valid_record("vigil.Alert", alert)


def test_alert__expiry_names_the_silence_and_the_broken_promise(assert_valid_record: Callable[..., None]) -> None:
    result = run([Ev(0, 0, ttl_s=30, id="last"), Expire(30)])
    alert = result.alerts[-1]
    assert (alert["time"], alert["severity"], alert["cause_event_id"]) == (NOW_MS + 30 * S, 3, "last")
    assert alert["text"] == "no event for 30s (ttl 30s) since 2026-01-01T00:00:00.000Z"
    assert alert["id"] == alert_id("web1", "load", "last", "EXPIRED")
    assert_valid_record("vigil.Alert", alert)


def test_alert__replaying_the_same_events_gives_identical_alerts() -> None:
    steps = [Ev(0, 0, ttl_s=30), Ev(2, 1, ttl_s=30), Expire(31), Ev(0, 40), Ev(1, 41)]
    first, second = run(steps), run(steps)
    assert first.alerts == second.alerts
    assert len({a["id"] for a in first.alerts}) == len(first.alerts) == 4


def test_expire__a_timer_for_another_deadline_is_a_no_op() -> None:
    state = run([Ev(0, 0, ttl_s=30)]).state
    for deadline_ms in (NOW_MS + 29 * S, NOW_MS + 31 * S):
        update = expire(state, deadline_ms=deadline_ms, flap=CALM)
        assert (update.state, update.changed, update.alert) == (state, False, None)


def test_status_record__is_a_valid_vigil_status(assert_valid_record: Callable[..., None]) -> None:
    state = run([Ev(1, 0, ttl_s=15.5)]).state
    record = to_status_record(state)
    assert record == {
        "subject": "web1", "name": "load", "state": "WARNING", "since": NOW_MS, "last_seen": NOW_MS,
        "last_event_id": "e1", "text": "step 1", "event_count": 1, "transition_count": 0, "flapping": False,
        "ttl": 15.5, "tags": {"n": "1"},
    }
    assert_valid_record("vigil.Status", record)


def test_copy_status__copies_every_field_to_its_own_place() -> None:
    state = StatusState(subject="s", name="n", state="CRITICAL", reported_state="WARNING", since_ms=1, last_seen_ms=2,
                        last_event_id="e", text="t", tags={"k": "v"}, event_count=3, transition_count=4, flapping=True,
                        recent_transitions_ms=(5,), ttl_s=6.0, expected_by_ms=7)
    copy = copy_status(state)
    assert copy == state and copy is not state


def test_state__from_dict_ignores_unknown_fields_and_fills_new_ones() -> None:
    data = run([Ev(2)]).state.to_dict()
    data["added_in_a_later_version"] = 1
    del data["reported_state"]
    assert StatusState.from_dict(data).reported_state == "CRITICAL"


def test_fold__flapping_starts_after_enough_transitions_and_is_flagged_on_alerts() -> None:
    policy = FlapPolicy(window_ms=60 * S, enter_transitions=4, exit_transitions=2)
    result = run([Ev(0), Ev(2, 1), Ev(0, 2), Ev(2, 3), Ev(0, 4)], flap=policy)
    assert [a["flapping"] for a in result.alerts] == [False, False, False, True]
    assert result.state.flapping


def test_fold__flapping_stops_once_transitions_age_out_and_republishes_status() -> None:
    policy = FlapPolicy(window_ms=60 * S, enter_transitions=4, exit_transitions=2)
    steps: list[Ev | Expire] = [Ev(0), Ev(2, 1), Ev(0, 2), Ev(2, 3), Ev(0, 4)]
    result = run([*steps, Ev(0, 30), Ev(0, 62), Ev(0, 64)], flap=policy)
    # at 62 s the transitions at 1 and 2 s have left the window: 2 remain, still flapping (hysteresis);
    # at 64 s only 1 remains: flapping stops without a transition, and the status is re-published
    assert result.changed[-3:] == [False, False, True]
    assert not result.state.flapping
    assert len(result.alerts) == 4


_SEVERITIES = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=30)


@settings(deadline=None)
@given(severities=_SEVERITIES)
def test_fold__alerts_follow_the_run_length_of_reported_states(severities: list[int | None]) -> None:
    """For in-order events: one alert per change of state, plus one for a non-OK first sighting."""
    result = run([Ev(sev, at_s=i) for i, sev in enumerate(severities)])
    names = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
    states: list[str] = []
    for sev in severities:
        if sev is not None:
            states.append(names[sev])
        else:  # no opinion: keep the state (OK for a first sighting)
            states.append(states[-1] if states else "OK")
    expected = [(NO_STATE, states[0])] if states[0] != "OK" else []
    changes = [(a, b) for a, b in itertools.pairwise(states) if a != b]
    assert result.transitions == expected + changes
    assert result.state.transition_count == len(changes)
    assert result.state.event_count == len(severities)


@settings(deadline=None)
@given(data=st.data(), severities=st.lists(st.integers(0, 3), min_size=1, max_size=15))
def test_fold__arrival_order_never_regresses_the_state(data: st.DataObject, severities: list[int]) -> None:
    """Whatever order events arrive in, the newest one decides the state and every event counts."""
    events = [Ev(sev, at_s=i) for i, sev in enumerate(severities)]
    arrival = data.draw(st.permutations(events))
    state = run(arrival).state
    assert state.state == ["OK", "WARNING", "CRITICAL", "UNKNOWN"][severities[-1]]
    assert state.last_seen_ms == NOW_MS + (len(severities) - 1) * S
    assert state.event_count == len(severities)


@settings(deadline=None)
@given(steps=st.lists(st.builds(Ev, st.one_of(st.none(), st.integers(0, 3)), st.integers(0, 120),
                                st.none() | st.just(30.0), st.none() | st.sampled_from(["x", "y"])),
                      min_size=1, max_size=25))
def test_fold_into__one_private_copy_gives_what_fold_status_gives(steps: list[Ev]) -> None:
    """The tracker folds a batch's events into one copy_status, in place: same states, same alerts,
    same re-sends as a new state per event (flapping included), and the stored state never changes."""
    flappy = FlapPolicy(window_ms=60_000, enter_transitions=3, exit_transitions=1)
    first = fold_status(None, _event(steps[0], 1), flap=flappy).state
    stored = StatusState.from_dict(first.to_dict())
    expected = run(steps, flap=flappy)
    private = copy_status(stored)
    alerts = run(steps[:1], flap=flappy).alerts
    changed = [True]
    for n, step in enumerate(steps[1:], start=2):
        folded = fold_into(private, _event(step, n), flap=flappy)
        changed.append(False if folded is None else folded[0])
        if folded is not None and folded[1] is not None:
            alerts.append(folded[1])
    assert private == expected.state and alerts == expected.alerts and changed == expected.changed
    assert stored == first
