"""The executor agent in the runtime harness: every result status, retries, DLQ, signatures,
the ledger across redeliveries and crashes, ordering and concurrency."""

from __future__ import annotations

import pytest

from app.executor.runner import CheckpointFailed
from app.model.events import Action, ResultStatus
from tests.unit.executor.conftest import KEY, make_action, only


def test_success__one_result_with_output_trace_and_timings(executor, recorder) -> None:
    h = executor()
    h.run(make_action("a1", type="work"))
    [result] = h.results()
    assert (result.status, result.output, result.attempts) == ("SUCCEEDED", "did a1", 1)
    assert (result.rule, result.type, result.target, result.trace_id) == ("r1", "work", "web1", "trace-1")
    assert result.started == 5_000 and result.finished == 5_000
    assert h.ledger("a1")["state"] == "finished"
    assert h.checkpoints >= 1, "'started' is committed before the plugin runs"
    assert h.outputs("actions-dlq") == [] and recorder.calls == ["a1"]


def test_print__logs_the_action_and_returns_the_line(executor, caplog) -> None:
    h = executor()
    with caplog.at_level("INFO", logger="vigil.actions"):
        h.run(make_action("p1", params={"message": "disk full", "n": 1}))
    [result] = h.results()
    assert result.status == "SUCCEEDED"
    assert result.output.startswith("disk full [action p1 rule=r1 target=web1 event=ev-1 trace=trace-1]")
    assert result.output in caplog.text


def test_sync_plugin__runs_in_a_thread(executor, recorder) -> None:
    h = executor()
    h.run(make_action("s1", type="blocking"))
    assert h.statuses() == {"s1": ["SUCCEEDED"]} and recorder.calls == ["s1"]


def test_retry__failures_then_success(executor, recorder) -> None:
    recorder.fail_times["a1"] = 2
    h = executor(retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(make_action("a1", type="work"))
    [result] = h.results()
    assert (result.status, result.attempts) == ("SUCCEEDED", 3)
    assert recorder.calls == ["a1"] * 3
    assert h.outputs("actions-dlq") == []


def test_retries_exhausted__failed_result_and_action_dead_lettered(executor, recorder) -> None:
    recorder.fail_times["a1"] = 10
    h = executor(retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(make_action("a1", type="work"))
    [result] = h.results()
    assert (result.status, result.attempts, result.error, result.output) == ("FAILED", 3, "flaky", "partial")
    [dead] = h.outputs("actions-dlq")
    assert dead.schema == "vigil.Action" and Action.from_record(dead.value).id == "a1"
    assert dead.headers["vigil.status"] == "FAILED" and dead.headers["vigil.attempts"] == "3"
    assert dead.headers["vigil.error"] == "flaky"


def test_non_retryable_failure__not_retried(executor, recorder) -> None:
    recorder.fail_times["a1"] = 10
    h = executor(retries={"max_attempts": 5, "backoff": "1ms"})
    h.run(make_action("a1", type="work", params={"retryable": False}))
    assert [(r.status, r.attempts) for r in h.results()] == [("FAILED", 1)]
    assert len(h.outputs("actions-dlq")) == 1


def test_deadline_passed__expired_and_not_run(executor, recorder) -> None:
    h = executor(wall_clock_ms=10_000)
    h.run(make_action("late", type="work", deadline=9_999), make_action("on-time", type="work", deadline=10_000))
    assert h.statuses() == {"late": ["EXPIRED"], "on-time": ["SUCCEEDED"]}
    assert recorder.calls == ["on-time"]
    assert "deadline passed 1 ms ago" in h.results()[0].error
    assert h.outputs("actions-dlq") == []


@pytest.mark.parametrize(("signature", "why"), [(None, "has no signature"), ("00" * 32, "has a wrong signature")])
def test_signature__missing_or_wrong_is_rejected_and_leaves_the_ledger_alone(executor, recorder, signature,
                                                                           why) -> None:
    h = executor(key=KEY)
    forged = make_action("a1", type="work")
    forged["signature"] = signature
    h.run(forged)
    [result] = h.results()
    assert result.status == "REJECTED" and why in result.error
    assert h.ledger("a1") is None and recorder.calls == []
    assert len(h.outputs("actions-dlq")) == 1
    h.run(make_action("a1", type="work", key=KEY))  # the genuine action with that id still runs
    assert h.statuses()["a1"] == ["REJECTED", "SUCCEEDED"]


def test_signature__tampered_params_are_rejected(executor) -> None:
    h = executor(key=KEY)
    action = make_action("a1", type="work", key=KEY)
    action["params"] = '{"sleep": 0, "extra": 1}'
    h.run(action)
    assert h.statuses() == {"a1": ["REJECTED"]}


def test_signature__not_checked_without_a_key(executor) -> None:
    h = executor()
    h.run(make_action("a1", type="work"))
    assert h.statuses() == {"a1": ["SUCCEEDED"]}


@pytest.mark.parametrize(("action", "error"), [
    (make_action("u1", type="nope"), "unknown action type 'nope'"),
    ({**make_action("u2", type="work"), "params": "[1, 2]"}, "params must be a JSON object"),
    ({**make_action("u3", type="work"), "params": "{oops"}, "params are not valid JSON"),
    (make_action("u4", type="print", target="t", params=None) | {"id": ""}, "not a valid vigil.Action"),
    ({"subject": "web1", "name": "load"}, "not a valid vigil.Action"),
])
def test_invalid_actions__rejected_and_dead_lettered(executor, recorder, action, error) -> None:
    h = executor()
    h.run(action)
    [result] = h.results()
    assert result.status == "REJECTED" and error in result.error
    assert len(h.outputs("actions-dlq")) == 1 and recorder.calls == []


def test_plugin_rejects_params__rejected_without_retry(executor) -> None:
    h = executor()
    h.run(make_action("f1", type="fire_event", params={"subject": "web1"}))  # no name
    [result] = h.results()
    assert (result.status, result.attempts) == ("REJECTED", 1)
    assert "param name is required" in result.error


def test_redelivered_after_finished__duplicate_and_not_run_again(executor, recorder) -> None:
    h = executor()
    h.run(make_action("a1", type="work"))
    h.restart()
    h.run(make_action("a1", type="work"))
    assert h.statuses() == {"a1": ["SUCCEEDED", "DUPLICATE"]}
    assert recorder.calls == ["a1"]
    assert "already finished (SUCCEEDED)" in h.results()[1].error


def test_same_id_twice_in_one_batch__runs_once(executor, recorder) -> None:
    h = executor()
    h.run(make_action("a1", type="work", target="x"), make_action("a1", type="work", target="y"))
    assert sorted(h.statuses()["a1"]) == ["DUPLICATE", "SUCCEEDED"]
    assert recorder.calls == ["a1"]


def test_killed_mid_action__not_idempotent_is_reported_not_rerun(executor, recorder) -> None:
    h = executor()
    recorder.kill_once.add("a1")
    h.run_until_killed(make_action("a1", type="work"))
    assert h.results() == [] and h.ledger("a1")["state"] == "started"
    h.run(make_action("a1", type="work"))  # redelivered: its offset was never committed
    [result] = h.results()
    assert result.status == "FAILED" and result.error.startswith("interrupted")
    assert "not idempotent" in result.error
    assert recorder.calls == ["a1"], "not run a second time"
    assert len(h.outputs("actions-dlq")) == 1


def test_killed_mid_action__idempotent_is_run_again_once(executor, recorder) -> None:
    h = executor()
    recorder.kill_once.add("a1")
    h.run_until_killed(make_action("a1", type="safe-work"))
    h.run(make_action("a1", type="safe-work"))
    assert h.statuses() == {"a1": ["SUCCEEDED"]}
    assert recorder.calls == ["a1", "a1"]


def test_killed_mid_batch__results_published_before_the_kill_stand(executor, recorder) -> None:
    h = executor()
    recorder.kill_once.add("b")
    batch = [make_action(i, type="work", target="t") for i in ("a", "b", "c")]
    h.run_until_killed(*batch)
    assert h.statuses() == {"a": ["SUCCEEDED"]}, "a's result was committed with b's 'started'"
    h.run(*batch)  # the whole batch is redelivered
    assert h.statuses() == {"a": ["SUCCEEDED", "DUPLICATE"], "b": ["FAILED"], "c": ["SUCCEEDED"]}
    assert recorder.calls == ["a", "b", "c"]
    non_duplicate = [r.action_id for r in h.results() if r.status != "DUPLICATE"]
    assert sorted(non_duplicate) == ["a", "b", "c"], "exactly one non-DUPLICATE result per action id"


def test_per_target__in_order_one_at_a_time_while_targets_run_concurrently(executor, recorder) -> None:
    h = executor(concurrency=8)
    batch = [make_action(f"{t}{i}", type="work", target=t, params={"sleep": 0.002 * (5 - i)})
             for i in range(5) for t in ("x", "y", "z")]
    h.run(*batch)
    for t in ("x", "y", "z"):
        assert [c for c in recorder.calls if c[0] == t] == [f"{t}{i}" for i in range(5)]
    assert recorder.max_active_per_target == {"x": 1, "y": 1, "z": 1}
    assert recorder.max_active == 3
    assert len(only(h.results(), ResultStatus.SUCCEEDED)) == 15


def test_global_concurrency__caps_actions_in_flight(executor, recorder) -> None:
    h = executor(concurrency=2)
    h.run(*[make_action(f"a{i}", type="work", target=f"t{i}", params={"sleep": 0.002}) for i in range(6)])
    assert recorder.max_active == 2
    assert len(only(h.results(), ResultStatus.SUCCEEDED)) == 6


def test_per_target_concurrency__allows_overlap_within_a_target(executor, recorder) -> None:
    h = executor(per_target_concurrency=3)
    h.run(*[make_action(f"a{i}", type="work", target="t", params={"sleep": 0.005}) for i in range(6)])
    assert recorder.max_active_per_target == {"t": 3}
    assert recorder.calls == [f"a{i}" for i in range(6)], "starts keep offset order"


def test_splay__delays_but_runs_everything(executor, recorder) -> None:
    h = executor(splay="5ms")
    h.run(*[make_action(f"a{i}", type="work", target=f"t{i}") for i in range(4)])
    assert sorted(recorder.calls) == ["a0", "a1", "a2", "a3"]


@pytest.mark.parametrize(("plugin", "attempts"), [("work", 1), ("safe-work", 3)])
def test_timeout__timed_out_retried_only_when_idempotent(executor, recorder, plugin, attempts) -> None:
    h = executor(timeout="10ms", retries={"max_attempts": 3, "backoff": "1ms"})
    h.run(make_action("slow", type=plugin, params={"sleep": 5}))
    [result] = h.results()
    assert (result.status, result.attempts) == ("TIMED_OUT", attempts)
    assert len(h.outputs("actions-dlq")) == 1


def test_sends__published_with_a_successful_attempt_only(executor, recorder) -> None:
    recorder.fail_times["a1"] = 1
    h = executor()
    h.run(make_action("a1", type="work", params={"send": ["side"]}))
    assert [o.value for o in h.outputs("side")] == [{"from": "a1"}], "the failed attempt's send was dropped"


def test_fire_event__event_carries_trace_action_and_a_stable_id(executor) -> None:
    h = executor()
    action = make_action("f1", type="fire_event", target="web1",
                         params={"name": "remediated", "severity": 1, "tags": {"team": "ops"}, "kind": "archive"})
    h.run(action)
    [out] = h.outputs("events")
    event = out.value
    assert (out.key, event.subject, event.name, event.kind, event.severity) == (
        "web1/remediated", "web1", "remediated", "ARCHIVE", 1)
    assert event.trace_id == "trace-1" and event.origin == "vigil-executor"
    assert event.tags == {"team": "ops", "action_id": "f1", "vigil.chain.rules": "r1", "vigil.chain.depth": "1"}
    assert event.extended["action"] == {"id": "f1", "rule": "r1", "event_id": "ev-1"}
    h2 = executor()
    h2.run(action)
    assert h2.outputs("events")[0].value.id == event.id, "a re-run would produce the same event id"


def test_fire_event__extends_the_actions_chain_which_params_cannot_override(executor) -> None:
    h = executor()
    h.run(make_action("f3", type="fire_event", target="web1", chain=["a", "b"],
                      params={"name": "again", "tags": {"vigil.chain.rules": "", "vigil.chain.depth": "0"}}))
    [out] = h.outputs("events")
    assert (out.value.tags["vigil.chain.rules"], out.value.tags["vigil.chain.depth"]) == ("a,b,r1", "3")


def test_fire_event__data_param_is_the_extended_data_as_in_the_example_rule(executor) -> None:
    # rules/load.yaml (the example, verbatim): fire_event: {subject: "lb", ..., data: {reason: ...}}
    h = executor()
    h.run(make_action("f2", type="fire_event", target="web1", params={
        "subject": "lb", "name": "reconfig", "kind": "archive", "data": {"reason": "load on web1 is 25.0"}}))
    [out] = h.outputs("events")
    assert (out.value.subject, out.value.name, out.value.kind) == ("lb", "reconfig", "ARCHIVE")
    assert out.value.extended["reason"] == "load on web1 is 25.0"
    assert h.results()[0].status == "SUCCEEDED"


def test_ledger_sweep__forgets_ids_after_retention(executor) -> None:
    h = executor(ledger_retention="1h", wall_clock_ms=0)
    h.run(make_action("a1", type="work"))
    h.advance_wall_clock(3_600_000)
    assert h.ledger("a1") is not None, "not older than the retention yet"
    h.advance_wall_clock(3_600_000)
    assert h.ledger("a1") is None
    h.run(make_action("a1", type="work"))
    assert h.statuses()["a1"] == ["SUCCEEDED", "SUCCEEDED"], "a forgotten id runs again (documented)"


def test_killed_then_deadline_passed__expired_saying_it_may_have_run(executor, recorder) -> None:
    h = executor(wall_clock_ms=1_000)
    recorder.kill_once.add("a1")
    h.run_until_killed(make_action("a1", type="safe-work", deadline=2_000))
    h.wall_clock_ms = 3_000
    h.run(make_action("a1", type="safe-work", deadline=2_000))
    [result] = h.results()
    assert result.status == "EXPIRED" and "may have taken effect" in result.error


def test_checkpoint_failure__stops_the_executor_before_anything_runs(executor, recorder) -> None:
    h = executor()

    def broken_commit() -> None:
        raise RuntimeError("produce failed, not committing")

    h.engine.checkpoint_hook = broken_commit
    with pytest.raises(CheckpointFailed, match="cannot make 'started' durable"):
        h.run(make_action("a1", type="work"))
    assert recorder.calls == []
