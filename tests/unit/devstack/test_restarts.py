"""The restart policy of `vigil dev run`: backoff, recovery, the rate cap, and what a death report says."""

from __future__ import annotations

import random
import signal

import pytest

from app.devstack.restarts import RestartPolicy, RestartTracker, describe_exit, format_death_report
from app.retry import Backoff

POLICY = RestartPolicy(initial_delay_s=1.0, max_delay_s=30.0, min_delay_s=0.5, healthy_after_s=60.0,
                       max_starts=5, window_s=60.0, keeps_dying_after=3)


class Ceiling(random.Random):
    """Full jitter drawing its ceiling every time: the backoff's upper bound, exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Floor(random.Random):
    """Full jitter drawing 0 every time: the worst case for a restart storm."""

    def uniform(self, a: float, b: float) -> float:
        return a


def tracker(rng: random.Random, policy: RestartPolicy = POLICY) -> RestartTracker:
    return RestartTracker(policy, Backoff(initial_s=policy.initial_delay_s, max_s=policy.max_delay_s, rng=rng))


def test_quick_deaths__backoff_doubles_up_to_the_cap() -> None:
    t, now, delays = tracker(Ceiling(), RestartPolicy(max_starts=1000)), 0.0, []
    for _ in range(8):
        t.started(now)
        d = t.died(at_s=now + 0.1)
        delays.append(d.delay_s)
        now = d.restart_at_s
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_run_past_healthy_after__resets_the_backoff() -> None:
    t = tracker(Ceiling(), RestartPolicy(max_starts=1000))
    t.started(0.0)
    t.died(at_s=1.0)
    t.started(2.0)
    assert t.died(at_s=3.0).delay_s == 2.0
    t.started(5.0)
    assert t.died(at_s=5.0 + 60.0).delay_s == 1.0  # ran a full minute: recovered, back to the first delay


def test_jitter_drawing_zero__still_waits_the_floor() -> None:
    t = tracker(Floor())
    t.started(0.0)
    d = t.died(at_s=0.0)
    assert (d.delay_s, d.restart_at_s, d.rate_capped) == (0.5, 0.5, False)


def test_dying_at_once_forever__at_most_max_starts_in_any_window() -> None:
    t, now, starts = tracker(Floor()), 0.0, []
    for _ in range(40):
        t.started(now)
        starts.append(now)
        d = t.died(at_s=now)  # dies the moment it starts
        assert d.restart_at_s > now
        now = d.restart_at_s
    for i, at in enumerate(starts):
        in_window = [s for s in starts[i:] if s < at + POLICY.window_s]
        assert len(in_window) <= POLICY.max_starts
    assert starts[5] == pytest.approx(60.0)  # five quick starts, then the sixth when the first left the window


def test_rate_cap__reported_as_such_and_never_gives_up() -> None:
    t, now = tracker(Floor()), 0.0
    decisions = []
    for _ in range(12):
        t.started(now)
        decisions.append(d := t.died(at_s=now))
        now = d.restart_at_s
    assert [d.rate_capped for d in decisions[:4]] == [False] * 4
    assert decisions[4].rate_capped and decisions[4].delay_s == pytest.approx(60.0 - 2.0)
    assert all(d.restart_at_s > 0 for d in decisions)  # every death gets a restart time
    assert [d.total_deaths for d in decisions] == list(range(1, 13))


def test_keeps_dying__after_three_deaths_within_the_window_only() -> None:
    t = tracker(Floor())
    flags = []
    for at in (0.0, 10.0, 20.0, 100.0, 200.0):
        t.started(at)
        flags.append(t.died(at_s=at + 1.0).keeps_dying)
    assert flags == [False, False, True, False, False]


@pytest.mark.parametrize(("returncode", "text"), [
    (0, "exit code 0"),
    (3, "exit code 3"),
    (-signal.SIGKILL, "killed by SIGKILL (signal 9)"),
    (-signal.SIGTERM, "killed by SIGTERM (signal 15)"),
    (-200, "killed by an unknown signal (signal 200)"),
])
def test_describe_exit(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text


def test_death_report__names_the_component_how_it_died_its_last_lines_and_the_restart() -> None:
    t = tracker(Floor())
    for at in (0.0, 1.0, 2.0):
        t.started(at)
        decision = t.died(at_s=at + 0.5)
    lines = format_death_report("worker", returncode=1, ran_s=0.5, last_lines=["Traceback ...", "ValueError: x"],
                                decision=decision, window_s=60.0)
    assert lines == [
        "!!! worker DIED: exit code 1 after running 0.5 s (it keeps dying: 3 times in the last 60 s)",
        "!!! worker: its last 2 line(s) of output:",
        "!!!   Traceback ...",
        "!!!   ValueError: x",
        "!!! worker: restarting in 0.5 s; death #3 since `vigil dev run` started",
    ]


def test_death_report__silent_component() -> None:
    t = tracker(Floor())
    t.started(0.0)
    lines = format_death_report("events", returncode=-9, ran_s=12.0, last_lines=[], decision=t.died(at_s=12.0),
                                window_s=60.0)
    assert lines[0] == "!!! events DIED: killed by SIGKILL (signal 9) after running 12.0 s"
    assert lines[1] == "!!! events: it printed nothing"
