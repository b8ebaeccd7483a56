"""Schedules: slots of cron expressions and intervals, the per-target splay, which slot is due (pure),
their errors as file:line, and `schedule:` rules in the rules stage (once per slot across restarts
and a second process; per-target splay; quiet targets dropped)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.rules.schedules import Schedule, ScheduleError, due_slot, schedule_from_spec, splay_delay_ms
from app.rules.spec import compile_rules_text

from .conftest import event
from .stage_helpers import StageRun, write_rules

S = 1000
M = 60 * S
H = 60 * M


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _durations(value: object, key: str) -> int:
    return {"1h": H, "10m": 10 * M, "30m": 30 * M, "2h": 2 * H, "500ms": 500}[str(value)]


# -- pure -----------------------------------------------------------------------------------------------


def test_every__slots_are_utc_epoch_multiples() -> None:
    hourly = Schedule(every_ms=H)
    at = _ms("2026-03-01T10:17:00")
    assert hourly.next_slot(at) == _ms("2026-03-01T11:00:00")
    assert hourly.slot_at_or_before(at) == _ms("2026-03-01T10:00:00")
    assert hourly.next_slot(_ms("2026-03-01T11:00:00")) == _ms("2026-03-01T12:00:00"), "strictly after"
    assert hourly.slot_at_or_before(_ms("2026-03-01T11:00:00")) == _ms("2026-03-01T11:00:00"), "at or before"


def test_cron__slots_follow_the_expression_in_utc() -> None:
    half_hourly = Schedule(cron="*/30 * * * *")
    assert half_hourly.next_slot(_ms("2026-03-01T10:17:00")) == _ms("2026-03-01T10:30:00")
    assert half_hourly.next_slot(_ms("2026-03-01T10:30:00")) == _ms("2026-03-01T11:00:00")
    assert half_hourly.slot_at_or_before(_ms("2026-03-01T10:30:00")) == _ms("2026-03-01T10:30:00")
    assert half_hourly.slot_at_or_before(_ms("2026-03-01T10:29:59")) == _ms("2026-03-01T10:00:00")
    weekdays = Schedule(cron="0 9 * * 1-5")
    assert weekdays.next_slot(_ms("2026-03-06T10:00:00")) == _ms("2026-03-09T09:00:00"), "Friday -> Monday"


def test_splay__deterministic_within_range_and_spread() -> None:
    delays = [splay_delay_ms("config-run", f"web{i}", 10 * M) for i in range(200)]
    assert delays == [splay_delay_ms("config-run", f"web{i}", 10 * M) for i in range(200)]
    assert all(0 <= d < 10 * M for d in delays)
    assert len(set(delays)) == 200
    assert min(delays) < 2 * M and max(delays) > 8 * M, "spread over the whole splay"
    assert splay_delay_ms("config-run", "web1", 0) == 0
    assert splay_delay_ms("other-rule", "web1", 10 * M) != splay_delay_ms("config-run", "web1", 10 * M)


def test_due_slot__early_due_fired_and_missed() -> None:
    hourly = Schedule(every_ms=H)
    slot = _ms("2026-03-01T11:00:00")
    assert due_slot(hourly, next_slot_ms=slot, last_fired_ms=None, delay_ms=5 * M, now_ms=slot + 4 * M) is None
    assert due_slot(hourly, next_slot_ms=slot, last_fired_ms=None, delay_ms=5 * M, now_ms=slot + 5 * M) == slot
    assert due_slot(hourly, next_slot_ms=slot, last_fired_ms=slot, delay_ms=5 * M, now_ms=slot + 6 * M) is None
    # three slots missed while nothing ran: the newest fires, once
    assert due_slot(hourly, next_slot_ms=slot, last_fired_ms=None, delay_ms=5 * M,
                    now_ms=slot + 3 * H + 10 * M) == slot + 3 * H


@pytest.mark.parametrize(("spec", "key", "message"), [
    ({"cron": "*/30 * * *"}, "cron", "not a 5-field cron expression"),
    ({"cron": "61 * * * *"}, "cron", "out of range"),
    ({"every": "1h", "cron": "* * * * *"}, None, "exactly one of"),
    ({}, None, "exactly one of"),
    ({"every": "1h", "splay": "2h"}, "splay", "must be shorter than the interval"),
    ({"cron": "*/30 * * * *", "splay": "30m"}, "splay", "must be shorter than the interval"),
    ({"every": "500ms"}, "every", "shorter than 1s"),
])
def test_schedule_from_spec__invalid(spec: dict[str, object], key: str | None, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as caught:
        schedule_from_spec(spec, _durations)
    assert caught.value.key == key


def test_schedule_from_spec__valid() -> None:
    assert schedule_from_spec({"cron": "*/30 * * * *", "splay": "10m"}, _durations) == Schedule(
        cron="*/30 * * * *", splay_ms=10 * M)
    assert schedule_from_spec({"every": "1h"}, _durations) == Schedule(every_ms=H)


def test_rules_check__invalid_schedules_reported_with_file_and_line() -> None:
    text = """rules:
  - name: ok
    schedule: {cron: "*/30 * * * *", splay: 10m}
    actions: [{print: {}}]
  - name: bad-cron
    schedule:
      cron: "*/30 * *"
    actions: [{print: {}}]
  - name: bad-splay
    schedule:
      every: 10m
      splay: 1h
    actions: [{print: {}}]
  - name: bad-every
    every: soon
    actions: [{print: {}}]
  - name: two-triggers
    every: 1h
    absent_for: 10s
    actions: [{print: {}}]
"""
    rules, errors = compile_rules_text(text, "sched.yaml")
    assert [r.name for r in rules] == ["ok"]
    found = [(e.line, e.message) for e in errors]
    assert [line for line, _ in found] == [7, 12, 15, 18], found
    assert "5-field cron" in found[0][1] and "splay" in found[1][1] and "soon" in found[2][1]
    assert "exactly one trigger" in found[3][1]
    assert all(str(e).startswith(f"sched.yaml:{e.line}: ") for e in errors)


# -- in the rules stage ------------------------------------------------------------------------------------

T0 = _ms("2026-03-01T10:00:00")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    path = tmp_path / "rules"
    path.mkdir()
    return path


def _slots(run: StageRun, rule: str) -> list[int]:
    return [int(json.loads(a.params)["slot"]) for a in run.actions() if a.rule == rule]


def test_schedule_without_match__once_per_slot_across_restarts_and_a_second_process(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: config-run
            schedule: {cron: "*/30 * * * *", splay: 10m}
            actions: [{print: {slot: "{{ value }}"}}]
    """)
    run = StageRun(rules_dir, wall_clock_ms=T0 + 5 * M)
    run.feed([event("any", "noise", T0 + 5 * M)])  # any event carries the schedule's start
    delay = splay_delay_ms("config-run", "", 10 * M)
    run.advance(25 * M + delay - 1)
    assert run.actions() == []
    run.advance(1)  # 10:30 + splay
    assert _slots(run, "config-run") == [T0 + 30 * M]
    (action,) = run.actions()
    assert action.time == T0 + 30 * M + delay and action.target == "config-run"
    run.restart(new_process=True)
    run.feed([event("any", "noise", T0 + 31 * M)])  # a new process starts the schedule again: no-op
    run.advance(M)
    assert _slots(run, "config-run") == [T0 + 30 * M], "no second firing of the slot"
    for _ in range(4):
        run.advance(15 * M)
    assert _slots(run, "config-run") == [T0 + 30 * M, T0 + 60 * M, T0 + 90 * M]
    ids = [a.id for a in run.actions()]
    assert len(set(ids)) == 3


def test_every_shorthand__fires_on_the_hour(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - {name: hourly, every: 1h, actions: [{print: {slot: "{{ value }}"}}]}
    """)
    run = StageRun(rules_dir, wall_clock_ms=T0 + M)
    run.feed([event("any", "noise", T0 + M)])
    for _ in range(6):
        run.advance(30 * M)
    assert _slots(run, "hourly") == [T0 + H, T0 + 2 * H, T0 + 3 * H]


def test_schedule_per_target__each_host_its_own_splay_and_quiet_hosts_dropped(rules_dir: Path) -> None:
    write_rules(rules_dir, """
        rules:
          - name: puppet-run
            match: {name: heartbeat}
            group_by: [subject]
            schedule: {every: 1h, splay: 30m}
            actions: [{print: {host: "{{ event.subject }}", slot: "{{ value }}"}}]
    """)
    run = StageRun(rules_dir, wall_clock_ms=T0)
    hosts = [f"web{i}" for i in range(6)]
    run.feed([event(h, "heartbeat", T0) for h in hosts])
    for _ in range(4):
        run.advance(30 * M)  # 12:00
        run.feed([event(h, "heartbeat", run.harness.wall_clock_ms) for h in hosts if h != "web5"])
    by_host: dict[str, list[int]] = {}
    for a in run.actions():
        by_host.setdefault(a.target, []).append(a.time)
    expected = {h: [T0 + H + splay_delay_ms("puppet-run", h, 30 * M)] for h in hosts}
    for h in hosts[:5]:
        if T0 + 2 * H + splay_delay_ms("puppet-run", h, 30 * M) <= run.harness.wall_clock_ms:
            expected[h].append(T0 + 2 * H + splay_delay_ms("puppet-run", h, 30 * M))
    assert by_host == expected
    assert len({t for times in by_host.values() for t in times[:1]}) == 6, "the fleet does not start at once"
    for _ in range(8):
        run.advance(30 * M)
    assert not [a for a in run.actions() if a.target == "web5" and a.time > T0 + 3 * H], "web5 went quiet"


def test_offline_simulation__schedules_fire_by_event_time(tmp_path: Path) -> None:
    from app.rules.offline import run_offline

    write_rules(tmp_path, """
        rules:
          - {name: every-10m, every: 10m, actions: [{print: {}}]}
    """)
    actions = run_offline(tmp_path, [event("h1", "x", T0 + M)], until_ms=T0 + 35 * M)
    assert [a.time_ms for a in actions] == [T0 + 10 * M, T0 + 20 * M, T0 + 30 * M]
