"""Flap detection: entering at a high count of transitions in the window, leaving below a lower one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline.flap import FlapPolicy, is_flapping, record_transition, transitions_in_window

POLICY = FlapPolicy(window_ms=10_000, enter_transitions=4, exit_transitions=2)


@pytest.mark.parametrize(
    ("was_flapping", "recent_ms", "now_ms", "expected"),
    [
        pytest.param(False, (), 0, False, id="no transitions"),
        pytest.param(False, (1000, 2000, 3000), 3000, False, id="3 < enter 4: not yet"),
        pytest.param(False, (1000, 2000, 3000, 4000), 4000, True, id="4 within window: enters"),
        pytest.param(False, (1000, 2000, 3000, 4000), 11_000, False, id="one aged out: not entering"),
        pytest.param(True, (1000, 2000, 3000, 4000), 12_500, True, id="2 remain: stays (hysteresis)"),
        pytest.param(True, (1000, 2000, 3000, 4000), 13_500, False, id="1 remains: leaves"),
        pytest.param(True, (1000, 2000, 3000, 4000), 60_000, False, id="all aged out: leaves"),
        pytest.param(False, (1000, 2000, 3000), 12_500, False, id="2 remain but was not flapping: stays out"),
    ],
)
def test_is_flapping__enter_and_leave_with_hysteresis(was_flapping: bool, recent_ms: tuple[int, ...], now_ms: int,
                                                      expected: bool) -> None:
    assert is_flapping(was_flapping, recent_ms, now_ms, POLICY) is expected


def test_transitions_in_window__the_window_is_open_at_its_old_end() -> None:
    assert transitions_in_window((0, 5000, 10_000), 10_000, POLICY) == 2  # 0 is exactly window_ms old


def test_record_transition__drops_aged_out_and_keeps_at_most_enter_transitions() -> None:
    recent: tuple[int, ...] = ()
    for t in range(0, 7000, 1000):
        recent = record_transition(recent, t, POLICY)
    assert recent == (3000, 4000, 5000, 6000)
    assert record_transition(recent, 20_000, POLICY) == (20_000,)


@settings(deadline=None)
@given(times=st.lists(st.integers(0, 100_000), max_size=40))
def test_record_transition__bounded_and_the_capped_count_decides_like_the_full_history(times: list[int]) -> None:
    recent: tuple[int, ...] = ()
    flapping_capped = flapping_full = False
    history: list[int] = []
    for t in sorted(times):
        recent = record_transition(recent, t, POLICY)
        history.append(t)
        assert len(recent) <= POLICY.enter_transitions
        flapping_capped = is_flapping(flapping_capped, recent, t, POLICY)
        flapping_full = is_flapping(flapping_full, tuple(history), t, POLICY)
        assert flapping_capped == flapping_full


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_ms": 0}, "flap window must be positive, got 0ms"),
        ({"enter_transitions": 1}, "enter_transitions must be at least 2"),
        ({"exit_transitions": 0}, "exit_transitions must be between 1 and enter_transitions (5), got 0"),
        ({"exit_transitions": 6}, "exit_transitions must be between 1 and enter_transitions (5), got 6"),
    ],
)
def test_policy__invalid_settings_say_what_is_wrong(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FlapPolicy(**kwargs)


def test_policy__describes_itself() -> None:
    assert FlapPolicy().describe() == "5 transitions within 10m (until fewer than 2)"
