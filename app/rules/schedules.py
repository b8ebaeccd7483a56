"""Schedules: when a `schedule:` rule fires. Pure (no clock, no Kafka): slots of a cron expression or a
fixed interval, a deterministic per-target splay, and the decision of which slot is due.

    schedule: {cron: "*/30 * * * *", splay: 10m}     # every half hour (UTC), spread over 10 minutes
    schedule: {every: 1h, splay: 5m}                 # every hour, on the hour (UTC epoch multiples)
    every: 1h                                        # the same as schedule: {every: 1h}

A slot is the nominal time (ms, UTC) a schedule names. A target (the rule's group: one per
`group_by` value when the rule has a `match:`, else one for the whole rule) fires for a slot at
`slot + splay_delay_ms(rule, target, splay)`: the same delay after every restart and on every worker,
spread over [0, splay) so a fleet does not run at once.

Once per slot: the rule state keeps the last slot fired (changelogged with the timer that fires the
next one), and the firing id is derived from rule + target + slot, so a replay after a crash or a
rebalance makes the same action id, which the executor runs once. Slots missed while nothing ran
(every worker down for hours) fire once, for the newest missed slot, not once each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

__all__ = [
    "MIN_INTERVAL_MS",
    "Schedule",
    "ScheduleError",
    "due_slot",
    "schedule_from_spec",
    "splay_delay_ms",
]

#: Shortest interval a schedule may have (a cron expression's resolution is a minute).
MIN_INTERVAL_MS: Final = 1_000
_CRON_ERRORS: Final = (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError)


class ScheduleError(ValueError):
    """A schedule that cannot be used (the message says what to write instead; `key`: the key at fault)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Schedule:
    """A cron expression (5 fields, UTC) or a fixed interval, and the splay its targets spread over."""

    cron: str | None = None
    every_ms: int | None = None
    splay_ms: int = 0

    def next_slot(self, after_ms: int) -> int:
        """The first slot strictly after `after_ms`."""
        if self.every_ms is not None:
            return (after_ms // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        start = datetime.fromtimestamp(after_ms / 1000, UTC)
        return int(round(croniter(self.cron, start).get_next(float) * 1000))

    def slot_at_or_before(self, at_ms: int) -> int:
        """The newest slot at or before `at_ms`."""
        if self.every_ms is not None:
            return at_ms // self.every_ms * self.every_ms
        assert self.cron is not None
        # croniter's get_prev is strictly before its start: start a millisecond later.
        start = datetime.fromtimestamp((at_ms + 1) / 1000, UTC)
        return int(round(croniter(self.cron, start).get_prev(float) * 1000))

    def describe(self) -> str:
        what = f"cron {self.cron!r} (UTC)" if self.cron is not None else f"every {self.every_ms}ms"
        return what + (f", splay {self.splay_ms}ms" if self.splay_ms else "")


def splay_delay_ms(rule: str, target: str, splay_ms: int) -> int:
    """A target's delay after each slot: a hash of rule and target spread over [0, splay_ms), the same
    on every worker and after every restart."""
    if splay_ms <= 0:
        return 0
    digest = hashlib.sha256(f"{rule}\x1f{target}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * splay_ms >> 64


def due_slot(schedule: Schedule, *, next_slot_ms: int, last_fired_ms: int | None, delay_ms: int,
             now_ms: int) -> int | None:
    """The slot to fire now, or None: the newest slot from `next_slot_ms` on whose time
    (slot + delay) has come, unless it was fired already (at or before `last_fired_ms`)."""
    if now_ms < next_slot_ms + delay_ms:
        return None
    slot = schedule.slot_at_or_before(now_ms - delay_ms)
    slot = max(slot, next_slot_ms)
    if last_fired_ms is not None and slot <= last_fired_ms:
        return None
    return slot


def _check_cron(expression: Any) -> str:
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise ScheduleError(f"cron {expression!r} is not a 5-field cron expression (minute hour day-of-month "
                            "month day-of-week), e.g. cron: \"*/30 * * * *\"", "cron")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(float)
    except _CRON_ERRORS as exc:
        raise ScheduleError(f"cron {expression!r}: {exc}", "cron") from None
    return expression


def schedule_from_spec(spec: dict[str, Any], duration_ms: Any) -> Schedule:
    """A Schedule from `{cron: ..., every: ..., splay: ...}` (durations already parsed by
    `duration_ms(value, key)`, which returns ms or raises ScheduleError); ScheduleError otherwise."""
    has_cron, has_every = spec.get("cron") is not None, spec.get("every") is not None
    if has_cron == has_every:
        raise ScheduleError("a schedule needs exactly one of `cron:` (e.g. \"*/30 * * * *\") or `every:` "
                            "(e.g. 1h)")
    splay_ms = duration_ms(spec["splay"], "splay") if spec.get("splay") is not None else 0
    if has_cron:
        schedule = Schedule(cron=_check_cron(spec["cron"]), splay_ms=splay_ms)
    else:
        every_ms = duration_ms(spec["every"], "every")
        if every_ms < MIN_INTERVAL_MS:
            raise ScheduleError(f"every: {spec['every']!r} is shorter than {MIN_INTERVAL_MS // 1000}s", "every")
        schedule = Schedule(every_ms=every_ms, splay_ms=splay_ms)
    interval_ms = _shortest_interval_ms(schedule)
    if splay_ms >= interval_ms:
        raise ScheduleError(f"splay ({splay_ms // 1000}s) must be shorter than the interval between slots "
                            f"({interval_ms // 1000}s), or runs of one slot overlap the next", "splay")
    return schedule


def _shortest_interval_ms(schedule: Schedule) -> int:
    """The interval between slots (for cron: the shortest of the next few, from a fixed start)."""
    if schedule.every_ms is not None:
        return schedule.every_ms
    at = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp() * 1000)
    gaps = []
    for _ in range(24):
        following = schedule.next_slot(at)
        gaps.append(following - at)
        at = following
    return min(gaps[1:])
