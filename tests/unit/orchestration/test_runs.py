"""Runbook runs and rolls in the runtime harness: steps in order with when/on_failure/goto,
approvals, waits, rolls over members (concurrency, max_failures, members that leave), control
commands, and restarts in the middle of a step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from app.orchestration.members import MemberInfo
from tests.conftest import wait_until
from tests.unit.executor.conftest import SimulatedKill

RUNBOOK = """
runbooks:
  - name: fix-web
    steps:
      - name: check
        action: {step: {say: "checked {{ params.service }}"}}
      - name: restart
        when: "'checked' in steps.check.output"
        action: {step: {say: restarted}}
        on_failure: goto escalate
        on_success: goto verify
      - name: escalate
        action: {step: {say: escalated}}
      - name: verify
        action: {step: {say: "verified after {{ steps.restart.status }}"}}
"""


def test_runbook__runs_each_step_once_in_order_with_when_and_goto(orchestration, calls) -> None:
    h = orchestration(RUNBOOK)
    run_id = h.start("runbook", {"name": "fix-web", "params": {"service": "nginx"}})
    state = h.state(run_id)
    assert state["state"] == "succeeded", state
    [lane] = state["lanes"]
    assert {k: v["status"] for k, v in lane["steps"].items()} == {"check": "SUCCEEDED", "restart": "SUCCEEDED",
                                                                    "verify": "SUCCEEDED"}
    assert lane["steps"]["verify"]["output"] == "verify on web1: verified after SUCCEEDED"
    results = h.step_results()
    assert Counter(r.action_id for r in results) == Counter({r.action_id: 1 for r in results}) and len(results) == 3
    assert all(r.status == "SUCCEEDED" and r.trace_id == "trace-1" for r in results)
    steps = [o.value for o in h.outputs("actions") if o.value.run]
    assert [a.run.partition("/")[2] for a in steps] == ["check", "restart", "verify"]
    assert all(a.run.startswith(run_id + "/") for a in steps), "each step names its run (the trace nests it)"


def test_runbook__a_failing_step_follows_on_failure(orchestration, calls) -> None:
    h = orchestration(RUNBOOK.replace("{say: restarted}", "{say: restarted, fail: true}"))
    run_id = h.start("runbook", {"name": "fix-web", "params": {"service": "x"}})
    lane = h.state(run_id)["lanes"][0]
    assert [lane["steps"][s]["status"] for s in ("check", "restart", "escalate", "verify")] == [
        "SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert h.state(run_id)["state"] == "succeeded"


def test_runbook__stop_on_failure_fails_the_run(orchestration, calls) -> None:
    h = orchestration("""
runbooks:
  - name: rb
    steps:
      - {name: one, action: {step: {fail: true}}}
      - {name: two, action: {step: {}}}
""")
    run_id = h.start("runbook", {"name": "rb"})
    state = h.state(run_id)
    assert state["state"] == "failed" and "step one FAILED" in state["reason"]
    assert "two" not in state["lanes"][0]["steps"] and len(calls.done) == 1


APPROVAL = """
runbooks:
  - name: gated
    steps:
      - name: ask
        approve: {approvers: ["ops-*"], timeout: 1m, on_timeout: goto timed-out, message: "restart {{ target }}?"}
        on_failure: stop
      - {name: act, action: {step: {say: acted}}, on_success: end}
      - {name: timed-out, action: {step: {say: "nobody answered"}}}
"""


def test_approval__waits_refuses_strangers_then_continues_when_approved(orchestration, calls) -> None:
    h = orchestration(APPROVAL)
    run_id = h.start("runbook", {"name": "gated"})
    lane = h.state(run_id)["lanes"][0]
    assert lane["phase"] == "approval" and lane["steps"]["ask"]["message"] == "restart web1?"
    h.send("approve", run_id, by="mallory")
    assert h.state(run_id)["lanes"][0]["phase"] == "approval" and not calls.done
    assert "mallory may not approve" in h.state(run_id)["log"][-1]["text"]
    h.send("approve", run_id, by="ops-alice", comment="go")
    state = h.state(run_id)
    assert state["state"] == "succeeded"
    assert state["lanes"][0]["steps"]["ask"]["by"] == "ops-alice" and state["lanes"][0]["steps"]["ask"]["status"] \
        == "APPROVED"
    assert [c[0] for c in calls.done] and "timed-out" not in state["lanes"][0]["steps"]


def test_approval__rejection_follows_on_failure(orchestration, calls) -> None:
    h = orchestration(APPROVAL)
    run_id = h.start("runbook", {"name": "gated"})
    h.send("approve", run_id, by="ops-bob", approved=False, comment="not now")
    state = h.state(run_id)
    assert state["state"] == "failed" and "rejected by ops-bob" in state["reason"] and not calls.done


def test_approval__timeout_follows_its_declared_path(orchestration, calls) -> None:
    h = orchestration(APPROVAL)
    run_id = h.start("runbook", {"name": "gated"})
    h.tick(30_000)
    assert h.state(run_id)["lanes"][0]["phase"] == "approval"
    h.tick(31_000)
    state = h.state(run_id)
    assert state["lanes"][0]["steps"]["ask"]["status"] == "TIMED_OUT"
    assert state["lanes"][0]["steps"]["timed-out"]["output"].endswith("nobody answered")
    assert "act" not in state["lanes"][0]["steps"] and state["state"] == "succeeded"


WAIT = """
runbooks:
  - name: heal
    steps:
      - name: restart
        action: {step: {}}
        wait_for: {status: {subject: "{{ target }}", name: http, in: [OK]}, within: 30s, every: 5s}
        on_failure: goto page
        on_success: end
      - {name: page, action: {step: {say: paged}}}
"""


def test_wait_for__polls_until_the_condition_holds(orchestration, calls, source) -> None:
    source.set("web1", "http", "CRITICAL")
    h = orchestration(WAIT)
    run_id = h.start("runbook", {"name": "heal"})
    assert h.state(run_id)["lanes"][0]["phase"] == "wait"
    h.tick(5_000)
    assert "1 of 1 not OK" in h.state(run_id)["lanes"][0]["steps"]["restart"]["reason"]
    source.set("web1", "http", "OK")
    h.tick(5_000)
    state = h.state(run_id)
    assert state["state"] == "succeeded" and state["lanes"][0]["steps"]["restart"]["status"] == "SUCCEEDED"
    assert len(calls.done) == 1


def test_wait_for__deadline_fails_the_step_with_the_last_reason(orchestration, calls, source) -> None:
    source.set("web1", "http", "CRITICAL")
    h = orchestration(WAIT)
    run_id = h.start("runbook", {"name": "heal"})
    h.tick(5_000, times=7)
    lane = h.state(run_id)["lanes"][0]
    assert lane["steps"]["restart"]["status"] == "TIMED_OUT"
    assert "did not hold within 30s" in lane["steps"]["restart"]["error"]
    assert lane["steps"]["page"]["status"] == "SUCCEEDED"


ROLL_RULES = """
runbooks:
  - name: noop
    steps: [{name: s, action: {step: {}}}]
"""


def test_roll__every_member_once_at_most_concurrency_at_a_time(orchestration, calls) -> None:
    h = orchestration(ROLL_RULES)
    run_id = h.start("roll", {"members": {"tags": {"role": "cassandra"}}, "concurrency": 3,
                              "max_failures": 5, "action": {"step": {"sleep": 0.01}}})
    state = h.state(run_id)
    assert state["state"] == "succeeded", state["reason"]
    assert sorted(t for _, t in calls.done) == sorted(f"db{i}" for i in range(1, 11))
    assert Counter(a for a, _ in calls.done).most_common(1)[0][1] == 1
    assert state["counts"] == {"succeeded": 10}


def test_roll__max_failures_stops_it(orchestration, calls) -> None:
    calls.fail_targets = {"db1", "db2"}
    h = orchestration(ROLL_RULES)
    run_id = h.start("roll", {"members": {"tags": {"role": "cassandra"}}, "concurrency": 1, "max_failures": 1,
                              "action": {"step": {}}})
    state = h.state(run_id)
    assert state["state"] == "failed" and "max_failures" in state["reason"]
    assert [t for _, t in calls.done] == ["db1", "db10", "db2"], "hosts in name order; none after the 2nd failure"
    assert state["counts"] == {"failed": 2, "succeeded": 1, "cancelled": 7}


def test_roll__a_member_that_leaves_is_reported_not_waited_on(orchestration, calls, members, source) -> None:
    h = orchestration(ROLL_RULES)
    for i in range(1, 11):
        source.set(f"db{i}", "cassandra", "OK")
    source.set("db10", "cassandra", "CRITICAL")
    run_id = h.start("roll", {"members": {"tags": {"role": "cassandra"}}, "concurrency": 1,
                              "action": {"step": {}},
                              "wait_for": {"status": {"subject": "{{ member.host }}", "name": "cassandra",
                                                      "in": ["OK"]}, "within": "10m"}})
    assert h.state(run_id)["lanes"][1]["phase"] == "wait", "db10 (sorted second) is not healthy yet"
    members.set(None, host="db10")
    h.tick(10_000)
    state = h.state(run_id)
    assert state["lanes"][1]["state"] == "left" and "left the members" in state["lanes"][1]["reason"]
    assert state["state"] == "succeeded" and state["counts"] == {"succeeded": 9, "left": 1}


def test_cancel_pause_resume(orchestration, calls, members) -> None:
    h = orchestration(ROLL_RULES)
    run_id = h.start("roll", {"members": {"tags": {"role": "cassandra"}}, "concurrency": 1, "splay": "1m",
                              "action": {"step": {}}})
    h.send("pause", run_id)
    h.tick(60_000, times=3)
    assert h.state(run_id)["state"] == "paused"
    done_while_paused = len(calls.done)
    h.tick(60_000, times=2)
    assert len(calls.done) == done_while_paused, "nothing starts while paused"
    h.send("resume", run_id)
    h.tick(60_000, times=2)
    assert len(calls.done) > done_while_paused
    h.send("cancel", run_id, reason="enough")
    h.tick(60_000, times=2)
    state = h.state(run_id)
    assert state["state"] == "cancelled" and state["counts"]["cancelled"] >= 1
    assert len(calls.done) == state["counts"].get("succeeded", 0)


def test_restart_mid_step__idempotent_step_runs_again_non_idempotent_is_reported(orchestration, calls) -> None:
    h = orchestration("""
runbooks:
  - name: rb
    steps:
      - {name: safe, action: {safe-step: {}}}
      - {name: risky, action: {step: {}}, on_failure: continue}
      - {name: last, action: {step: {}}}
""")
    calls.kill_once = {"safe", "risky"}
    h.run(h_start_record(h))
    kills = 0
    for _ in range(6):  # a kill, a restart, the watchdog timer resumes the run with no new record
        try:
            h.pump()
            h.tick(7_000)
        except SimulatedKill:
            kills += 1
            h.engine.outputs.clear()  # produced after the last commit: never reached Kafka
            h.engine.close()  # the stores lose what was not committed
            h._start()
    assert kills == 2
    state = h.state("start-1")
    lane = state["lanes"][0]
    assert lane["steps"]["safe"]["status"] == "SUCCEEDED"
    assert lane["steps"]["risky"]["status"] == "FAILED" and "interrupted" in lane["steps"]["risky"]["error"]
    assert lane["steps"]["last"]["status"] == "SUCCEEDED" and state["state"] == "succeeded"
    per_step = Counter(r.action_id for r in h.step_results() if r.status != "DUPLICATE")
    assert set(per_step.values()) == {1} and len(per_step) == 3


def h_start_record(h) -> dict:
    import json

    from app.model.events import Action
    from app.model.signing import sign_action
    from tests.unit.orchestration.conftest import KEY

    record = Action(id="start-1", time=1_000, rule="r1", type="runbook", target="web1",
                    params=json.dumps({"name": "rb"}), event_id="ev-1", trace_id="trace-1").to_record()
    record["signature"] = sign_action(record, KEY)
    return record


def test_unknown_member_set__the_run_fails_with_the_reason(orchestration, members) -> None:
    members.set(MemberInfo("db1", False, {"role": "cassandra"}))
    h = orchestration(ROLL_RULES)
    run_id = h.start("roll", {"members": {"tags": {"role": "nothing"}}, "action": {"step": {}}})
    state = h.state(run_id)
    assert state["state"] == "failed" and "no alive member matches" in state["reason"]


def test_roll_admission__fills_free_slots_at_once_and_reports_members_that_left() -> None:
    """Machine.admit (pure): one call admits up to `concurrency` running lanes, skipping (and
    reporting) members no longer present, and admits nothing more while the slots are full."""
    from app.orchestration.machine import Lane, Machine, Run
    from app.orchestration.runbooks import runbook_from_raw

    raw = {"name": "noop", "steps": [{"name": "s", "action": {"step": {}}}]}
    run = Run(id="r1", name="noop", runbook=raw, created_ms=0, lanes=10,
              roll={"members": {}, "concurrency": 3, "max_failures": 0})
    lanes = [Lane(i, f"db{i}") for i in range(10)]
    machine = Machine(run, runbook_from_raw(raw))
    gone = {"db1", "db3"}
    admitted = machine.admit(lanes, 1_000, lambda host: host not in gone)
    assert [(lane.target, lane.state) for lane in admitted] == [
        ("db0", "running"), ("db1", "left"), ("db2", "running"), ("db3", "left"), ("db4", "running")]
    assert machine.admit(lanes, 2_000, lambda host: True) == []  # three running: no free slot
    lanes[0].state = "succeeded"
    assert [lane.target for lane in machine.admit(lanes, 3_000, lambda host: True)] == ["db5"]


def test_durable_start__only_a_step_that_is_not_idempotent_commits_before_it_runs(orchestration, calls) -> None:
    h = orchestration("""
runbooks:
  - name: rb
    steps:
      - {name: safe, action: {safe-step: {}}}
      - {name: safe-again, action: {safe-step: {}}}
      - {name: risky, action: {step: {}}}
""")
    commits_when: list[int] = []  # how many steps had run at each checkpoint
    checkpoint = h.engine.checkpoint_hook
    assert checkpoint is not None

    def counting() -> None:
        commits_when.append(len(calls.done))
        checkpoint()

    h.engine.checkpoint_hook = counting
    run_id = h.start("runbook", {"name": "rb"})
    assert h.state(run_id)["state"] == "succeeded"
    assert len(calls.done) == 3
    # An idempotent step runs again with the same id after a crash, harmlessly: no commit of its own
    # "started"; a step that is not idempotent has one before it runs (after the two safe ones ran).
    assert 1 not in commits_when and 2 in commits_when


CARRIED = """
runbooks:
  - name: rb
    steps:
      - {name: slow, action: {safe-step: {sleep: 0.3}}}
      - {name: after, action: {step: {}}}
"""


def _short_slices(tmp_path: Path) -> dict:
    return {"slice": "20ms", "workers": ["http://127.0.0.1:1"], "rules_dir": str(tmp_path / "rules")}


def _tick_until(h, done) -> None:
    """Turns (the drive timer, 20 ms apart on the harness clock) until `done()`, within 10 s."""

    def turn() -> bool:
        h.tick(100)
        return done()

    wait_until(turn, timeout_s=10, message="the run to end")


def test_carry__an_idempotent_step_outlives_its_turn_and_ends_once_in_a_later_one(orchestration, calls,
                                                                                   tmp_path) -> None:
    h = orchestration(CARRIED, orchestration=_short_slices(tmp_path))
    run_id = h.start("runbook", {"name": "rb"})
    # The turn that started `slow` ended after its 20-ms slice without waiting for it.
    assert calls.done == [] and h.state(run_id)["state"] == "running"
    _tick_until(h, lambda: h.state(run_id)["state"] == "succeeded")
    lane = h.state(run_id)["lanes"][0]
    assert [lane["steps"][s]["status"] for s in ("slow", "after")] == ["SUCCEEDED", "SUCCEEDED"]
    per_step = Counter(r.action_id for r in h.step_results())
    assert set(per_step.values()) == {1} and len(per_step) == 2 and len(calls.done) == 2


def test_carry__a_cancel_between_turns_is_kept_when_the_carried_step_ends(orchestration, calls, tmp_path) -> None:
    h = orchestration(CARRIED, orchestration=_short_slices(tmp_path))
    run_id = h.start("runbook", {"name": "rb"})
    assert calls.done == []
    h.send("cancel", run_id, reason="enough")  # read between two turns, while `slow` runs
    _tick_until(h, lambda: h.state(run_id)["state"] not in ("running", "paused"))
    state = h.state(run_id)
    assert state["state"] == "cancelled", state
    assert state["lanes"][0]["steps"]["slow"]["status"] == "SUCCEEDED" and "after" not in state["lanes"][0]["steps"]
    assert len(calls.done) == 1 and len(h.step_results()) == 1


def test_kept_runs__a_rewind_without_an_error_reads_them_again_from_the_durable_state(orchestration, calls) -> None:
    # The orchestrator keeps a partition's runs between its calls; a worker that rewinds (a commit
    # failed) reopens the partition's stores with what was committed, and the runs must be read from
    # them again, not taken from memory, although no agent call failed.
    h = orchestration(APPROVAL.replace("step: {say: acted}", "safe-step: {say: acted}"))
    run_id = h.start("runbook", {"name": "gated"})
    assert h.state(run_id)["lanes"][0]["phase"] == "approval"
    h.commit()  # durable: the run waits for its approval
    h.send("approve", run_id, by="ops-alice")
    assert h.state(run_id)["state"] == "succeeded" and len(calls.done) == 1
    h.engine.outputs.clear()  # the rewind: what came after the commit is dropped ...
    h.engine.close()
    h._start()
    h.send("approve", run_id, by="ops-alice")  # ... and Kafka delivers the approval again
    state = h.state(run_id)
    assert state["state"] == "succeeded" and state["lanes"][0]["steps"]["ask"]["status"] == "APPROVED"
    assert len(calls.done) == 2 and len({action_id for action_id, _ in calls.done}) == 1  # `act` again, same id
