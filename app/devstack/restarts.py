"""When `vigil dev run` restarts a component that died, and what it tells the user (pure logic).

A component that exits while the stack is running is always restarted, after a backoff delay:
full-jitter exponential (app.retry.Backoff) with a floor, so a component that dies at once does not
spin. A run that lasted `healthy_after_s` counts as recovered and resets the backoff. On top, a
rate cap: at most `max_starts` starts of one component within `window_s`, so even an unlucky run of
short jitter draws cannot become a restart storm. A component is never given up on (the local stack
is for development: fix the code and it comes back), but every death is reported, and one that keeps
dying says so in its report.

No processes, clocks or output here: the supervisor passes times in and prints what comes out.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.retry import Backoff

__all__ = ["RestartDecision", "RestartPolicy", "RestartTracker", "describe_exit", "format_death_report"]


@dataclass(frozen=True)
class RestartPolicy:
    """How restarts of one component are spaced."""

    #: first backoff ceiling; doubles per consecutive quick death up to max_delay_s (full jitter below it)
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: never restart sooner than this after a death (full jitter alone may draw ~0)
    min_delay_s: float = 0.5
    #: a run at least this long resets the backoff: the component had recovered
    healthy_after_s: float = 60.0
    #: rate cap: at most max_starts starts of one component in any window_s
    max_starts: int = 5
    window_s: float = 60.0
    #: this many deaths within window_s and the report says the component keeps dying
    keeps_dying_after: int = 3


@dataclass(frozen=True)
class RestartDecision:
    """What to do about one death: restart at `restart_at_s` (same clock as the times passed in)."""

    restart_at_s: float
    delay_s: float
    #: deaths of this component within the policy's window, this one included
    recent_deaths: int
    #: deaths since the supervisor started, this one included
    total_deaths: int
    #: the rate cap, not the backoff, set the delay
    rate_capped: bool
    keeps_dying: bool


@dataclass
class RestartTracker:
    """The restart history of one component; `started(at_s)` at every start, `died(...)` at every death."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    backoff: Backoff | None = None
    _starts: deque[float] = field(default_factory=deque)
    _deaths: deque[float] = field(default_factory=deque)
    total_deaths: int = 0

    def __post_init__(self) -> None:
        if self.backoff is None:
            self.backoff = Backoff(initial_s=self.policy.initial_delay_s, max_s=self.policy.max_delay_s)

    def started(self, at_s: float) -> None:
        """Record a start of the component."""
        self._starts.append(at_s)
        self._forget_before(self._starts, at_s - self.policy.window_s)

    def died(self, *, at_s: float) -> RestartDecision:
        """Record a death at `at_s` and decide when to start the component again."""
        assert self.backoff is not None
        p = self.policy
        ran_s = at_s - self._starts[-1] if self._starts else 0.0
        if ran_s >= p.healthy_after_s:
            self.backoff.reset()
        self.total_deaths += 1
        self._deaths.append(at_s)
        self._forget_before(self._deaths, at_s - p.window_s)
        self._forget_before(self._starts, at_s - p.window_s)
        delay_s = max(p.min_delay_s, self.backoff.next_delay_s())
        rate_capped = False
        if len(self._starts) >= p.max_starts:
            # the next start must wait until the oldest start in the window has left it
            allowed_at_s = self._starts[len(self._starts) - p.max_starts] + p.window_s
            if allowed_at_s - at_s > delay_s:
                delay_s, rate_capped = allowed_at_s - at_s, True
        return RestartDecision(restart_at_s=at_s + delay_s, delay_s=delay_s, recent_deaths=len(self._deaths),
                               total_deaths=self.total_deaths, rate_capped=rate_capped,
                               keeps_dying=len(self._deaths) >= p.keeps_dying_after)

    @staticmethod
    def _forget_before(times: deque[float], cutoff_s: float) -> None:
        while times and times[0] <= cutoff_s:
            times.popleft()


def describe_exit(returncode: int) -> str:
    """A Popen returncode in words: 'exit code 3', 'killed by SIGKILL (signal 9)'."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    return f"killed by {name} (signal {-returncode})"


def format_death_report(name: str, *, returncode: int, ran_s: float, last_lines: Sequence[str],
                        decision: RestartDecision, window_s: float) -> list[str]:
    """The lines that tell the user a component died: which, how, after how long, its last output,
    and when it comes back. Marked with `!!!` so they stand out between the components' output."""
    head = f"!!! {name} DIED: {describe_exit(returncode)} after running {ran_s:.1f} s"
    if decision.keeps_dying:
        head += f" (it keeps dying: {decision.recent_deaths} times in the last {window_s:g} s)"
    lines = [head]
    if last_lines:
        lines.append(f"!!! {name}: its last {len(last_lines)} line(s) of output:")
        lines += [f"!!!   {line}" for line in last_lines]
    else:
        lines.append(f"!!! {name}: it printed nothing")
    why = " (restart rate capped)" if decision.rate_capped else ""
    lines.append(f"!!! {name}: restarting in {decision.delay_s:.1f} s{why}; death #{decision.total_deaths} "
                 "since `vigil dev run` started")
    return lines
