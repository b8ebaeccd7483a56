"""Flap detection: many status transitions in a short time mark an identity as flapping.

The state is a short tuple of recent transition times (ms, oldest first). It never holds more than
`enter_transitions` entries: counting is capped there, and since the exit threshold is lower, a
capped count still decides both "start flapping" and "stop flapping" exactly. Hysteresis (enter at a
high count, leave only below a lower one) keeps an identity near the threshold from toggling its
flapping flag on every transition.

Time here is event time: flapping is re-evaluated when an event (or an expiry) is folded, so an
identity that falls silent while flapping keeps the flag until its next event or expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.durations import format_duration_ms

__all__ = ["FlapPolicy", "is_flapping", "record_transition", "transitions_in_window"]


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """When an identity counts as flapping.

    It starts flapping when at least `enter_transitions` transitions happened within the last
    `window_ms`, and stops once fewer than `exit_transitions` remain in the window.
    """

    window_ms: int = 600_000
    enter_transitions: int = 5
    exit_transitions: int = 2

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError(f"flap window must be positive, got {self.window_ms}ms")
        if self.enter_transitions < 2:
            raise ValueError(
                f"enter_transitions must be at least 2 (one transition is a change, not a flap), "
                f"got {self.enter_transitions}"
            )
        if not 1 <= self.exit_transitions <= self.enter_transitions:
            raise ValueError(
                f"exit_transitions must be between 1 and enter_transitions ({self.enter_transitions}), "
                f"got {self.exit_transitions}"
            )

    def describe(self) -> str:
        """One line for logs and help: '5 transitions within 10m (until fewer than 2)'."""
        return (f"{self.enter_transitions} transitions within {format_duration_ms(self.window_ms)} "
                f"(until fewer than {self.exit_transitions})")


def transitions_in_window(recent_ms: tuple[int, ...], now_ms: int, policy: FlapPolicy) -> int:
    """How many of the recorded transitions lie within the policy window ending at `now_ms`."""
    oldest_ms = now_ms - policy.window_ms
    return sum(1 for t in recent_ms if t > oldest_ms)


def record_transition(recent_ms: tuple[int, ...], at_ms: int, policy: FlapPolicy) -> tuple[int, ...]:
    """The recent transitions with one more at `at_ms`: those outside the window are dropped and
    at most `enter_transitions` (the newest) are kept."""
    oldest_ms = at_ms - policy.window_ms
    kept = [t for t in recent_ms if t > oldest_ms]
    kept.append(at_ms)
    kept.sort()
    return tuple(kept[-policy.enter_transitions:])


def is_flapping(was_flapping: bool, recent_ms: tuple[int, ...], now_ms: int, policy: FlapPolicy) -> bool:
    """Whether the identity is flapping at `now_ms`, given whether it was (hysteresis)."""
    count = transitions_in_window(recent_ms, now_ms, policy)
    if was_flapping:
        return count >= policy.exit_transitions
    return count >= policy.enter_transitions
