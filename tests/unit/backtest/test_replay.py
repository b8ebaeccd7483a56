"""The replay under its virtual clock: the pipeline's ttl expiry and every rule trigger advance by
event time, whatever the batching, slicing and number of processes; reruns give the same ids."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import app.backtest.run as backtest_run
from app.backtest.replayer import pipeline_timer_limit
from app.backtest.run import SliceDriver, build_replayer
from app.backtest.source import MemorySource
from app.backtest.times import TimeRange
from app.pipeline.agents import build_pipeline
from app.pipeline.config import PipelineConfig
from app.rules.loader import load_rules
from app.rules.offline import simulate
from app.runtime.testing import AgentHarness

from .conftest import T0, S, event, fired, partitioned, replay, rules_dir

STATUS_RULES = """
rules:
  - name: went-silent
    status: {to: EXPIRED}
    actions: [{print: {}}]
  - name: back
    status: {from: EXPIRED}
    actions: [{print: {}}]
  - name: disk-critical
    match: {name: disk}
    status: {to: CRITICAL}
    actions: [{print: {text: "{{ event.subject }} {{ value }}"}}]
"""


@pytest.fixture
def status_rules(tmp_path: Path) -> list[Path]:
    return [rules_dir(tmp_path, STATUS_RULES)]


def test_ttl_expiry__fires_at_the_deadline_before_the_next_event(status_rules: list[Path]) -> None:
    events = [event("h1", "heartbeat", 0, ttl=2.0), event("h1", "heartbeat", 5, ttl=2.0)]
    assert fired(replay(status_rules, events)) == [("went-silent", "h1", 2.0), ("back", "h1", 5.0)]


def test_ttl_expiry__not_when_the_next_event_keeps_the_promise(status_rules: list[Path]) -> None:
    events = [event("h1", "heartbeat", t, ttl=2.0) for t in (0, 1.5, 3, 4.5)]
    assert fired(replay(status_rules, events)) == []


def test_ttl_expiry__other_identities_in_the_batch_do_not_hold_it_back(status_rules: list[Path]) -> None:
    # one partition, one slice: the silence of h1 must be judged before the later events run
    busy = [event("web1", "load", t / 10) for t in range(100)]
    events = sorted([event("h1", "heartbeat", 0, ttl=2.0), *busy, event("h1", "heartbeat", 9.9, ttl=2.0)],
                    key=lambda e: e["time"])
    assert fired(replay(status_rules, events, partitions=1)) == [("went-silent", "h1", 2.0), ("back", "h1", 9.9)]


def test_ttl_expiry__a_pending_silence_expires_when_time_runs_to_the_end(status_rules: list[Path]) -> None:
    events = [event("h1", "heartbeat", 0, ttl=30.0)]
    assert fired(replay(status_rules, events, until_s=29)) == []
    assert fired(replay(status_rules, events, until_s=31)) == [("went-silent", "h1", 30.0)]


def test_status__transitions_the_pipeline_folds_reach_status_rules(status_rules: list[Path]) -> None:
    events = [event("db1", "disk", 0), event("db1", "disk", 1, severity=2), event("db1", "disk", 2, severity=2)]
    (action,) = replay(status_rules, events)
    assert (action.rule, action.target, action.time_ms, action.params) == (
        "disk-critical", "db1", T0 + S, '{"text":"db1 CRITICAL"}')
    assert action.event_id == events[1]["id"]  # the transition's cause


def test_absent_for__fires_once_per_silence_at_its_deadline(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: hb-missing
            match: {name: heartbeat}
            group_by: [subject]
            absent_for: 3s
            actions: [{print: {}}]
        """)]
    beats = [event("h1", "heartbeat", t) for t in (0, 1, 2, 10, 11, 30)]
    assert fired(replay(rules, beats, until_s=40)) == [("hb-missing", "h1", 5.0), ("hb-missing", "h1", 14.0),
                                                       ("hb-missing", "h1", 33.0)]
    assert fired(replay(rules, beats, until_s=32.9))[-1] == ("hb-missing", "h1", 14.0)


def test_absent_for__a_late_event_does_not_end_a_judged_silence(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: hb-missing
            match: {name: heartbeat}
            absent_for: 3s
            actions: [{print: {}}]
        """)]
    late = [event("h1", "heartbeat", 0), event("h1", "heartbeat", 10), event("h1", "heartbeat", 2)]
    assert fired(replay(rules, late, until_s=10)) == [("hb-missing", "h1", 3.0)]


def test_register_for__fires_only_after_holding_for_its_duration(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: hot
            match: {name: load}
            register: {metric: load1, aggregate: avg, period: 5s}
            when: {gt: 20}
            for: 10s
            throttle: {once_within: 1h}
            actions: [{print: {}}]
        """)]
    loads = [event("web1", "load", t, metrics={"load1": 30.0}) for t in range(0, 20)]
    assert fired(replay(rules, loads)) == [("hot", "web1", 10.0)]


def test_count__only_events_within_the_window_count(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: errors
            match: {name: log}
            count: {at_least: 3, within: 10s}
            actions: [{print: {}}]
        """)]
    logs = [event("web1", "log", t) for t in (0, 8, 15, 20, 24)]
    (action,) = replay(rules, logs)
    assert fired([action]) == [("errors", "web1", 24.0)]
    assert action.causes == tuple(e["id"] for e in logs[2:])  # the three events it counted


def test_count__causes_survive_later_events_of_the_same_batch(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: burst
            match: {name: log}
            count: {at_least: 3, within: 2s}
            actions: [{print: {}}]
        """)]
    logs = [event("web1", "log", t) for t in (0, 0.5, 1.0, 5, 8, 9.9)]  # one slice: noted, then evaluated
    (action,) = replay(rules, logs)
    assert action.causes == tuple(e["id"] for e in logs[:3])


def test_sequence__steps_in_order_within_the_time(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: deploy-restart
            sequence: [{match: {name: deploy}}, {match: {name: restart}}]
            within: 30s
            actions: [{print: {}}]
        """)]
    events = [event("web1", "restart", 0), event("web1", "deploy", 5), event("web1", "restart", 40),
              event("web1", "deploy", 50), event("web1", "restart", 60)]
    (action,) = replay(rules, events)
    assert fired([action]) == [("deploy-restart", "web1", 60.0)]
    assert action.causes == (events[3]["id"], events[4]["id"])


def test_throttle__windows_of_event_time(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: any-disk
            match: {name: disk}
            throttle: {once_within: 1m}
            actions: [{print: {}}]
        """)]
    events = [event("db1", "disk", t) for t in (0, 30, 59, 61, 100, 121)]
    assert [t for _, _, t in fired(replay(rules, events))] == [0.0, 61.0, 121.0]


def test_groups_across_partitions__see_events_merged_in_event_time(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, """
        rules:
          - name: fleet-errors
            match: {name: log}
            group_by: []
            count: {at_least: 4, within: 10s}
            actions: [{print: {target: fleet}}]
        """)]
    # interleaved in time across identities, so across partitions: only a merge by time sees 4 within 10 s
    events = [event(f"web{i % 8}", "log", i * 3) for i in range(12)]
    assert fired(replay(rules, events, partitions=3)) == [("fleet-errors", "fleet", 9.0),
                                                                 ("fleet-errors", "fleet", 21.0),
                                                                 ("fleet-errors", "fleet", 33.0)]


MIXED = STATUS_RULES + """
  - name: hb-missing
    match: {name: heartbeat}
    group_by: [subject]
    absent_for: 3s
    actions: [{print: {}}]
  - name: errors
    match: {name: log}
    group_by: []
    count: {at_least: 3, within: 10s}
    throttle: {once_within: 15s}
    actions: [{print: {target: fleet}}]
"""


def _mixed_events() -> list[dict[str, object]]:
    events = []
    for i in range(200):
        at = i * 0.37
        events.append(event(f"h{i % 7}", "heartbeat", at, ttl=1.0))  # 2.59 s apart: silences
        if i % 11 == 0:
            events.append(event(f"db{i % 3}", "disk", at + 0.1, severity=2 if i % 22 else 0))
        if i % 5 == 0:
            events.append(event(f"web{i % 4}", "log", at + 0.2))
    return events


@pytest.mark.parametrize(("partitions", "slice_ms", "workers"), [(1, 10_000, 1), (3, 1_000, 1), (3, 60_000, 1),
                                                                  (4, 10_000, 2), (6, 3_000, 3)])
def test_results__do_not_depend_on_partitions_slices_or_processes(tmp_path: Path, partitions: int, slice_ms: int,
                                                                  workers: int) -> None:
    rules = [rules_dir(tmp_path, MIXED)]
    reference = replay(rules, _mixed_events(), until_s=120, partitions=3)
    assert len(reference) > 20 and {a.rule for a in reference} == {"went-silent", "back", "disk-critical",
                                                                    "hb-missing", "errors"}
    again = replay(rules, _mixed_events(), until_s=120, partitions=partitions, slice_ms=slice_ms, workers=workers)
    assert [a.id for a in again] == [a.id for a in reference]


def test_event_rules__same_actions_and_ids_as_the_offline_rules_run(tmp_path: Path) -> None:
    directory = rules_dir(tmp_path, MIXED)
    events = [e for e in _mixed_events() if e["name"] != "disk"]
    offline = simulate(load_rules(directory)[0], events, until_ms=T0 + 120 * S).actions
    backtest = [a for a in replay([directory], events, until_s=120) if a.rule in ("hb-missing", "errors")]
    assert sorted(a.id for a in backtest) == sorted(a.id for a in offline if a.rule in ("hb-missing", "errors"))


def test_two_rule_sets__each_as_if_alone(tmp_path: Path) -> None:
    a = rules_dir(tmp_path, MIXED, "a")
    b = rules_dir(tmp_path, MIXED.replace("absent_for: 3s", "absent_for: 2s"), "b")
    both = replay([a, b], _mixed_events(), until_s=120)
    assert [x.id for x in both if x.ruleset == 0] == [x.id for x in replay([a], _mixed_events(), until_s=120)]
    assert [x.id for x in both if x.ruleset == 1] == [x.id for x in replay([b], _mixed_events(), until_s=120)]


def test_metric_windows__close_by_event_time(tmp_path: Path) -> None:
    rules = [rules_dir(tmp_path, "rules: []\n")]
    records = partitioned([event("web1", "load", t, metrics={"load1": 1.0, "load5": 2.0}) for t in range(0, 31)], 1)
    replayer = build_replayer(PipelineConfig.model_validate({"window_sizes": ["10s"], "grace": "5s"}), rules,
                              partitions=[0])
    SliceDriver(replayer, MemorySource(records), time_range=TimeRange(T0, T0 + 3600 * S)).run()
    # [0, 10 s) and [10 s, 20 s) closed (the watermark passed their end + grace + spread < 5 s), two metrics each; the
    # window of the last events stays open: windows close by event time, not by the range's end
    assert replayer.counts.windows == 4


def test_pipeline_timer_limit__never_after_the_deadline_the_pipeline_arms() -> None:
    harness = AgentHarness([build_pipeline().agent], wall_clock_ms=T0)
    record = event("h1", "heartbeat", 0, ttl=2.5)
    harness.feed("events", record, timestamp_ms=T0)
    (engine_partition,) = [ap for parts in harness.engine._parts.values() for ap in parts]
    due = engine_partition.timers.next_due("wall")
    limit = pipeline_timer_limit(record, record["time"])
    assert limit is not None and due is not None and limit <= due
    assert pipeline_timer_limit(event("h1", "load", 0), T0) is None


SCHEDULES = """
rules:
  - name: every-10s
    every: 10s
    actions: [{print: {}}]
  - name: per-host
    match: {name: heartbeat}
    group_by: [subject]
    schedule: {every: 20s, splay: 5s}
    actions: [{print: {}}]
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_schedules__fire_once_per_slot_in_event_time(tmp_path: Path, workers: int) -> None:
    from app.rules.schedules import splay_delay_ms

    rules = [rules_dir(tmp_path, SCHEDULES)]
    beats = [event(h, "heartbeat", t) for t in range(0, 61) for h in ("h1", "h2")]
    got = fired(replay(rules, beats, until_s=60, workers=workers))
    assert [s for rule, _, s in got if rule == "every-10s"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    per_host = sorted((target, s) for rule, target, s in got if rule == "per-host")
    expected = sorted((h, (slot + splay_delay_ms("per-host", h, 5 * S)) / S) for h in ("h1", "h2")
                      for slot in (20 * S, 40 * S, 60 * S) if slot + splay_delay_ms("per-host", h, 5 * S) <= 60 * S)
    assert per_host == expected


@pytest.mark.parametrize("rules", [MIXED, MIXED + SCHEDULES.replace("rules:\n", "")])
def test_route__a_record_routing_fails_on_is_counted_as_the_engine_counts_it(tmp_path: Path, rules: str) -> None:
    from app.backtest.clock import PositionClock
    from app.runtime.engine import InRecord

    # with schedules the route agent runs on the engine; without, the stage's keys are taken directly
    replayer = build_replayer(PipelineConfig.model_validate({}), [rules_dir(tmp_path, rules)], partitions=[0])
    good, bad = event("web1", "log", 1.0), {**event("web1", "log", 2.0), "time": "soon"}
    records = [InRecord("web1/log", value, offset, T0, "vigil.Event", f"0:{offset}".encode())
               for offset, value in enumerate([bad, good])]
    routed = replayer.rulesets[0].route("events", 0, 0, records, [T0 + S, T0 + 2 * S], PositionClock())
    assert [(item[3], item[4]["time"]) for item in routed if not item[3].startswith("s:")] == [("g:", T0 + S)]
    assert replayer.counts.agent_errors == {"rules_route_events": 1}


def test_slice_driver__collects_cycles_every_so_many_records_with_automatic_collection_paused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Automatic collection stays off while the slices run (their states hold no cycles); the
    # driver collects the young generations itself every COLLECT_EVERY_RECORDS records, and
    # leaves the collector as it found it, on or off.
    calls: list[bool] = []
    monkeypatch.setattr(backtest_run, "COLLECT_EVERY_RECORDS", 10)
    monkeypatch.setattr(backtest_run, "collect_young", lambda: calls.append(gc.isenabled()))
    records = partitioned([event("web1", "load", t, metrics={"load1": 1.0}) for t in range(0, 60)], 1)
    rules = [rules_dir(tmp_path, "rules: []\n")]
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            calls.clear()
            replayer = build_replayer(PipelineConfig.model_validate({}), rules, partitions=[0])
            SliceDriver(replayer, MemorySource(records), time_range=TimeRange(T0, T0 + 60 * S),
                        slice_ms=5 * S).run()
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
        assert replayer.counts.events == 60 and calls == [False] * 6  # 12 slices of 5 events


def test_slice_driver__without_pause_gc_leaves_the_collector_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    # The web server runs backtests in its own process: no pause (for every thread) and no collections of its own.
    calls: list[bool] = []
    monkeypatch.setattr(backtest_run, "COLLECT_EVERY_RECORDS", 10)
    monkeypatch.setattr(backtest_run, "collect_young", lambda: calls.append(gc.isenabled()))
    seen: list[bool] = []
    records = partitioned([event("web1", "load", t, metrics={"load1": 1.0}) for t in range(0, 60)], 1)
    replayer = build_replayer(PipelineConfig.model_validate({}), [rules_dir(tmp_path, "rules: []\n")], partitions=[0])
    SliceDriver(replayer, MemorySource(records), time_range=TimeRange(T0, T0 + 60 * S), slice_ms=5 * S,
                on_progress=lambda _ms: seen.append(gc.isenabled()), pause_gc=False).run()
    assert replayer.counts.events == 60 and calls == [] and seen and all(seen)
