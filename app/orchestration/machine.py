"""The run state machine. Pure: no Kafka, no plugins, no clock of its own -- the orchestrator
(app.orchestration.orchestrator) asks it what to do now, does it, and tells it how it went.

A run is a runbook over lanes. A plain run has one lane (its target); a roll has a lane per member,
admitted in order, `concurrency` at a time, each after a deterministic splay, never twice, and no
more once more than `max_failures` lanes failed. A lane walks the runbook's steps:

    enter step ──when false──> SKIPPED ─────────────────────────────┐
       │ approve ──> approval ──approve/reject/timeout──> done      │
       │ action  ──> action (the orchestrator runs it once) ──┐     │
       │ wait_for ─────────────────────> wait (polled) ───────┴─> step done ─> on_success / on_failure
                                                                      (continue | end | stop | goto STEP)

Everything the machine decides is written into the lane (`phase`, `not_before_ms`, `deadline_ms`)
before the orchestrator acts on it, so after a restart the same lane asks for the same work again
(an action with the same id, which the executor's ledger runs once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from app.globs import glob_matcher
from app.model.ids import deterministic_id
from app.orchestration.runbooks import Flow, Runbook, Step
from app.rules.templates import CompiledTemplate, RenderError, render_tree

__all__ = [
    "LANE_DONE",
    "RUN_DONE",
    "Lane",
    "Machine",
    "Poll",
    "Run",
    "StartAction",
    "Work",
    "splay_delay_ms",
    "step_action_id",
]

#: Lane states that will not change again.
LANE_DONE: Final = frozenset({"succeeded", "failed", "left", "cancelled"})
#: Run states that will not change again.
RUN_DONE: Final = frozenset({"succeeded", "failed", "cancelled"})
#: Step outcomes that count as success.
_OK: Final = frozenset({"SUCCEEDED", "SKIPPED", "APPROVED", "HELD"})
_MAX_TEXT: Final = 2000


def splay_delay_ms(run_id: str, target: str, splay_ms: int) -> int:
    """A member's delay before it starts: spread over [0, splay) by a hash, so it is the same after
    a restart and the fleet does not start at once."""
    if splay_ms <= 0:
        return 0
    digest = hashlib.sha256(f"{run_id}\x1f{target}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * splay_ms >> 64


def step_action_id(run_id: str, lane: int, step: str, visit: int) -> str:
    """The action id of one visit of one step in one lane (deterministic: a restart asks for the
    same id, which the ledger runs once)."""
    return deterministic_id("run-step", run_id, str(lane), step, str(visit))


def _shallow(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values shared, not copied: a lane's and a run's containers are
    replaced, never changed in place (`lane.steps = {**lane.steps, ...}`), so sharing them is safe --
    and `asdict`'s deep copy of every lane was most of a 1,000-member roll's time."""
    names = _FIELDS.get(type(obj))
    if names is None:
        names = _FIELDS[type(obj)] = tuple(f.name for f in fields(obj))
    return {name: getattr(obj, name) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {}


@dataclass
class Lane:
    """One target's way through the runbook."""

    index: int
    target: str
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "pending"  # pending | running | succeeded | failed | left | cancelled
    step: int = 0
    phase: str = ""  # "" (entering the step) | action | wait | approval
    not_before_ms: int | None = None
    deadline_ms: int | None = None
    visits: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_ms: int | None = None
    finished_ms: int | None = None
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.state in LANE_DONE

    def to_json(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lane:
        fields: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
        return cls(**fields)


@dataclass
class Run:
    """A run's header: what it runs, how it rolls, and how far it got (its lanes are kept apart)."""

    id: str
    name: str
    runbook: dict[str, Any]
    created_ms: int
    params: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    rule: str = ""
    trace_id: str | None = None
    event_id: str | None = None
    group_key: str = ""
    chain: list[str] = field(default_factory=list)
    requested_by: str = ""
    roll: dict[str, Any] | None = None  # {members: {...}, concurrency, splay_ms, max_failures}
    state: str = "pending"  # pending | running | paused | succeeded | failed | cancelled
    lanes: int = 0
    next_lane: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    paused: bool = False
    cancelled: dict[str, Any] | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    reason: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in RUN_DONE

    @property
    def concurrency(self) -> int:
        return int((self.roll or {}).get("concurrency", 1))

    @property
    def max_failures(self) -> int | None:
        return int(self.roll.get("max_failures", 0)) if self.roll else None

    def note(self, now_ms: int, text: str) -> None:
        """Append to the run's log (kept short: the newest 50 entries)."""
        self.log = [*self.log, {"time": now_ms, "text": text[:_MAX_TEXT]}][-50:]

    def to_json(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(**dict(data))


@dataclass(frozen=True)
class StartAction:
    """Run this action for this lane's step (once: its id is deterministic)."""

    lane: int
    step: str
    action_id: str
    type: str
    params: dict[str, Any]
    target: str
    deadline_ms: int | None


@dataclass(frozen=True)
class Poll:
    """Judge these conditions (already rendered for the lane) for this lane's wait."""

    lane: int
    step: str
    conditions: Any


Work = StartAction | Poll


def _text(value: Any) -> str:
    return str(value or "")[:_MAX_TEXT]


class Machine:
    """Decisions for one run, given its runbook (compiled from the run's own copy)."""

    def __init__(self, run: Run, runbook: Runbook) -> None:
        self.run = run
        self.runbook = runbook

    # -- admission -----------------------------------------------------------------------------------------
    def admit(self, lanes: list[Lane], now_ms: int, present: Callable[[str], bool]) -> list[Lane]:
        """Start pending lanes while the roll allows; members no longer present are reported as left.
        Returns the lanes that changed."""
        run = self.run
        changed: list[Lane] = []
        if run.state == "pending":
            run.state, run.started_ms = "running", now_ms
        if run.next_lane >= run.lanes or run.paused or run.cancelled is not None or self._stopped(lanes):
            return changed
        # Counted once, then kept: admitting adds running lanes and "left" ones, never failed ones, so
        # the roll cannot become stopped here (a pass over every lane per admitted lane was most of a
        # 1,000-member roll's scheduling time).
        running = sum(1 for lane in lanes if lane.state == "running")
        while run.next_lane < run.lanes and running < run.concurrency:
            lane = lanes[run.next_lane]
            run.next_lane += 1
            if lane.state != "pending":
                continue  # never twice
            if run.roll is not None and not present(lane.target):
                self._end_lane(lane, "left", now_ms, f"{lane.target} left the members before its turn")
            else:
                lane.state, lane.started_ms = "running", now_ms
                running += 1
                delay = splay_delay_ms(run.id, lane.target, int((run.roll or {}).get("splay_ms", 0)))
                lane.not_before_ms = now_ms + delay if delay else None
            changed.append(lane)
        return changed

    def _stopped(self, lanes: Iterable[Lane]) -> bool:
        limit = self.run.max_failures
        return limit is not None and sum(1 for lane in lanes if lane.state == "failed") > limit

    # -- what to do now ----------------------------------------------------------------------------------------
    def work(self, lane: Lane, now_ms: int, present: Callable[[str], bool]) -> Work | None:
        """The work a running lane needs now (None: nothing now; see `wake_ms`). Advances the lane
        through steps that need no work (skipped steps, approvals waiting, timeouts)."""
        for _ in range(len(self.runbook.steps) * 4 + 4):  # bounded: each turn moves a step or returns
            if lane.state != "running":
                return None
            if lane.phase in ("", "wait") and lane.not_before_ms is not None and now_ms < lane.not_before_ms:
                if lane.phase == "wait" and self.run.roll is not None and not present(lane.target):
                    self._end_lane(lane, "left", now_ms, f"{lane.target} left the members while waiting")
                return None
            if lane.step >= len(self.runbook.steps):
                self._end_lane(lane, "succeeded", now_ms, "")
                return None
            step = self.runbook.steps[lane.step]
            if lane.phase == "":
                if self.run.paused or self.run.cancelled is not None:
                    if self.run.cancelled is not None:
                        self._end_lane(lane, "cancelled", now_ms, self._cancel_reason())
                    return None
                work = self._enter(lane, step, now_ms)
                if work is not None:
                    return work
                continue  # skipped, waiting for approval, or a wait to poll now
            if lane.phase == "action":
                return self._start_action(lane, step, now_ms)
            if lane.phase == "wait":
                if self.run.cancelled is not None:
                    self._end_lane(lane, "cancelled", now_ms, self._cancel_reason())
                    return None
                if self.run.roll is not None and not present(lane.target):
                    self._end_lane(lane, "left", now_ms, f"{lane.target} left the members while waiting")
                    return None
                if lane.deadline_ms is not None and now_ms >= lane.deadline_ms:
                    record = lane.steps.get(step.name, {})
                    last = record.get("reason") or "never judged"
                    self._finish_step(lane, step, "TIMED_OUT", now_ms,
                                      error=f"did not hold within {(step.wait.within_ms if step.wait else 0) // 1000}s:"
                                            f" {last}")
                    continue
                return Poll(lane.index, step.name, self._render(step.wait.conditions if step.wait else [], lane,
                                                                step.name))
            if lane.phase == "approval":
                if self.run.cancelled is not None:
                    self._end_lane(lane, "cancelled", now_ms, self._cancel_reason())
                    return None
                if lane.deadline_ms is not None and now_ms >= lane.deadline_ms and step.approve is not None:
                    self._approval_timed_out(lane, step, now_ms)
                    continue
                return None
        return None

    def wake_ms(self, lanes: Iterable[Lane]) -> int | None:
        """When the run next needs attention without any input (splay, polls, deadlines)."""
        times = [t for lane in lanes if lane.state == "running" and lane.phase != "action"
                 for t in (lane.not_before_ms, lane.deadline_ms) if t is not None]
        return min(times) if times else None

    # -- entering a step --------------------------------------------------------------------------------------
    def context(self, lane: Lane) -> dict[str, Any]:
        """What templates of this lane see."""
        member = {"host": lane.target, "tags": dict(lane.tags)} if self.run.roll is not None else None
        return {"params": self.run.params, "target": lane.target, "member": member,
                "run": {"id": self.run.id, "name": self.run.name, "rule": self.run.rule},
                "steps": {name: dict(record) for name, record in lane.steps.items()}}

    def _render(self, node: Any, lane: Lane, path: str) -> Any:
        return render_tree(node, self.context(lane), path)

    def _enter(self, lane: Lane, step: Step, now_ms: int) -> Work | None:
        visit = lane.visits.get(step.name, 0) + 1
        if visit > step.max_visits:
            self._end_lane(lane, "failed", now_ms, f"step {step.name} reached {step.max_visits} visits (goto loop)")
            return None
        lane.visits = {**lane.visits, step.name: visit}
        record: dict[str, Any] = {"status": "RUNNING", "visit": visit, "started": now_ms}
        lane.steps = {**lane.steps, step.name: record}
        if step.when is not None:
            try:
                go = step.when.render(self.context(lane)).strip() == "true"
            except RenderError as exc:
                self._finish_step(lane, step, "FAILED", now_ms, error=f"when: {exc}")
                return None
            if not go:
                self._finish_step(lane, step, "SKIPPED", now_ms, output="`when` is false")
                return None
        if step.approve is not None:
            message = step.approve.message
            try:
                text = message.render(self.context(lane)) if isinstance(message, CompiledTemplate) else message
            except RenderError as exc:
                text = f"(message failed: {exc})"
            lane.phase, lane.deadline_ms, lane.not_before_ms = "approval", now_ms + step.approve.timeout_ms, None
            lane.steps = {**lane.steps, step.name: {**record, "status": "WAITING", "message": _text(text),
                                                    "approvers": list(step.approve.approvers),
                                                    "deadline": lane.deadline_ms}}
            self.run.note(now_ms, f"{lane.target}: step {step.name} waits for approval by "
                                  f"{', '.join(step.approve.approvers)}: {text}")
            return None
        if step.action is not None:
            lane.phase = "action"
            return self._start_action(lane, step, now_ms)
        self._begin_wait(lane, step, now_ms)
        return None

    def _start_action(self, lane: Lane, step: Step, now_ms: int) -> Work | None:
        action = step.action
        assert action is not None
        visit = lane.visits.get(step.name, 1)
        action_id = step_action_id(self.run.id, lane.index, step.name, visit)
        try:
            params = self._render(action.params, lane, f"{step.name}.params")
            target = lane.target
            if isinstance(action.target, CompiledTemplate):
                target = action.target.render(self.context(lane)).strip() or lane.target
        except RenderError as exc:
            self._finish_step(lane, step, "FAILED", now_ms, error=f"template: {exc}")
            return None
        record = lane.steps.get(step.name, {})
        if record.get("action_id") != action_id:
            lane.steps = {**lane.steps, step.name: {**record, "action_id": action_id, "type": action.type,
                                                    "target": target}}
        deadline = now_ms + action.deadline_ms if action.deadline_ms else None
        return StartAction(lane.index, step.name, action_id, action.type, params, target, deadline)

    def _begin_wait(self, lane: Lane, step: Step, now_ms: int) -> None:
        assert step.wait is not None
        lane.phase, lane.not_before_ms, lane.deadline_ms = "wait", None, now_ms + step.wait.within_ms

    # -- outcomes -------------------------------------------------------------------------------------------
    def action_finished(self, lane: Lane, step_name: str, *, status: str, output: str = "", error: str = "",
                        attempts: int = 0, started_ms: int | None = None, now_ms: int) -> None:
        """The step's action ended (its one result)."""
        if lane.state != "running" or lane.phase != "action" or self._current(lane).name != step_name:
            return  # a late answer for a step the lane has left (cannot happen in one process)
        step = self._current(lane)
        record = {**lane.steps.get(step_name, {}), "attempts": attempts, "output": _text(output),
                  "error": _text(error)}
        if started_ms is not None:
            record["started"] = started_ms
        lane.steps = {**lane.steps, step_name: record}
        if status == "SUCCEEDED" and step.wait is not None:
            lane.steps = {**lane.steps, step_name: {**record, "status": "WAITING"}}
            self._begin_wait(lane, step, now_ms)
            return
        self._finish_step(lane, step, status, now_ms, output=output, error=error)

    def polled(self, lane: Lane, step_name: str, *, holds: bool, reason: str, now_ms: int) -> None:
        """A wait's conditions were judged."""
        if lane.state != "running" or lane.phase != "wait" or self._current(lane).name != step_name:
            return
        step = self._current(lane)
        record = {**lane.steps.get(step_name, {}), "reason": _text(reason), "polled": now_ms}
        lane.steps = {**lane.steps, step_name: record}
        if holds:
            self._finish_step(lane, step, "HELD" if step.action is None else "SUCCEEDED", now_ms,
                              output=reason if step.action is None else record.get("output", ""))
            return
        assert step.wait is not None
        lane.not_before_ms = min(now_ms + step.wait.every_ms, lane.deadline_ms or now_ms + step.wait.every_ms)

    def approve(self, lanes: Iterable[Lane], *, by: str, approved: bool, comment: str, now_ms: int,
                step: str | None = None, member: str | None = None) -> list[Lane]:
        """An approval (or rejection) for the lanes waiting at an approve step; returns the lanes it
        decided. One from someone the step does not list is noted in the run's log and ignored."""
        decided: list[Lane] = []
        for lane in lanes:
            if lane.state != "running" or lane.phase != "approval":
                continue
            current = self._current(lane)
            if (step is not None and current.name != step) or (member is not None and lane.target != member):
                continue
            assert current.approve is not None
            if not any(glob_matcher(pattern)(by) for pattern in current.approve.approvers):
                self.run.note(now_ms, f"{by} may not approve step {current.name} (approvers: "
                                      f"{', '.join(current.approve.approvers)}); ignored")
                continue
            record = {**lane.steps.get(current.name, {}), "by": by, "comment": _text(comment)}
            lane.steps = {**lane.steps, current.name: record}
            verb = "approved" if approved else "rejected"
            self.run.note(now_ms, f"{lane.target}: step {current.name} {verb} by {by}"
                                  + (f": {comment}" if comment else ""))
            self._finish_step(lane, current, "APPROVED" if approved else "REJECTED", now_ms,
                              output=f"{verb} by {by}" + (f": {comment}" if comment else ""),
                              error="" if approved else f"rejected by {by}")
            decided.append(lane)
        return decided

    def _approval_timed_out(self, lane: Lane, step: Step, now_ms: int) -> None:
        assert step.approve is not None
        flow = step.approve.on_timeout
        what = f"no approval within {step.approve.timeout_ms // 1000}s"
        self.run.note(now_ms, f"{lane.target}: step {step.name}: {what}; {flow.describe()}")
        if flow.kind == "continue":
            self._finish_step(lane, step, "APPROVED", now_ms, output=f"{what}: continued (on_timeout: continue)")
        elif flow.kind == "stop":
            self._record(lane, step, "TIMED_OUT", now_ms, error=what)
            self._end_lane(lane, "failed", now_ms, f"step {step.name}: {what} (on_timeout: stop)")
        elif flow.kind == "goto":
            self._record(lane, step, "TIMED_OUT", now_ms, error=what)
            self._goto(lane, flow, now_ms)
        else:
            self._finish_step(lane, step, "TIMED_OUT", now_ms, error=what)

    # -- control ------------------------------------------------------------------------------------------------
    def cancel(self, lanes: Iterable[Lane], *, by: str, reason: str, now_ms: int) -> list[Lane]:
        """No new steps; lanes not running an action end as cancelled (one running an action ends
        once the action has)."""
        self.run.cancelled = {"by": by, "reason": reason, "time": now_ms}
        self.run.note(now_ms, f"cancelled by {by}" + (f": {reason}" if reason else ""))
        changed = []
        for lane in lanes:
            if lane.state == "pending" or (lane.state == "running" and lane.phase != "action"):
                self._end_lane(lane, "cancelled", now_ms, self._cancel_reason())
                changed.append(lane)
        return changed

    def pause(self, *, by: str, paused: bool, now_ms: int) -> None:
        """Paused: no member starts and no lane enters a new step until resumed."""
        self.run.paused = paused
        self.run.note(now_ms, f"{'paused' if paused else 'resumed'} by {by}")
        if self.run.state in ("running", "paused"):
            self.run.state = "paused" if paused else "running"

    def _cancel_reason(self) -> str:
        cancelled = self.run.cancelled or {}
        return f"cancelled by {cancelled.get('by', '?')}" + (f": {cancelled['reason']}" if cancelled.get("reason")
                                                             else "")

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def _current(self, lane: Lane) -> Step:
        return self.runbook.steps[min(lane.step, len(self.runbook.steps) - 1)]

    def _record(self, lane: Lane, step: Step, status: str, now_ms: int, *, output: str = "",
                error: str = "") -> None:
        record = {**lane.steps.get(step.name, {}), "status": status, "finished": now_ms}
        if output:
            record["output"] = _text(output)
        if error:
            record["error"] = _text(error)
        lane.steps = {**lane.steps, step.name: record}

    def _finish_step(self, lane: Lane, step: Step, status: str, now_ms: int, *, output: str = "",
                     error: str = "") -> None:
        self._record(lane, step, status, now_ms, output=output, error=error)
        lane.phase, lane.not_before_ms, lane.deadline_ms = "", None, None
        ok = status in _OK
        flow = step.on_success if ok else step.on_failure
        if flow.kind in ("continue",):
            lane.step += 1
        elif flow.kind == "end":
            self._end_lane(lane, "succeeded", now_ms, f"ended after step {step.name} (on_success: end)")
        elif flow.kind == "goto":
            self._goto(lane, flow, now_ms)
        else:  # stop
            detail = error or output or status
            self._end_lane(lane, "failed", now_ms, f"step {step.name} {status}: {detail}")

    def _goto(self, lane: Lane, flow: Flow, now_ms: int) -> None:
        lane.phase, lane.not_before_ms, lane.deadline_ms = "", None, None
        lane.step = self.runbook.index(str(flow.step))

    def _end_lane(self, lane: Lane, state: str, now_ms: int, reason: str) -> None:
        lane.state, lane.finished_ms, lane.reason = state, now_ms, _text(reason)
        lane.phase, lane.not_before_ms, lane.deadline_ms = "", None, None
        if state in ("failed", "left"):
            self.run.note(now_ms, f"{lane.target}: {state}: {reason}")

    def settle(self, lanes: list[Lane], now_ms: int) -> list[Lane]:
        """Count the lanes and end the run when nothing more will happen (all lanes done, or the roll
        stopped by max_failures with none running: the rest are cancelled). Returns changed lanes."""
        run = self.run
        changed: list[Lane] = []
        stopped = self._stopped(lanes)
        if stopped and not any(lane.state == "running" for lane in lanes):
            reason = f"roll stopped: more than max_failures ({run.max_failures}) members failed"
            for lane in lanes:
                if lane.state == "pending":
                    self._end_lane(lane, "cancelled", now_ms, reason)
                    changed.append(lane)
            run.next_lane = run.lanes
            if not run.reason:
                run.reason = reason
        counts: dict[str, int] = {}
        for lane in lanes:
            counts[lane.state] = counts.get(lane.state, 0) + 1
        run.counts = counts
        if run.done or not all(lane.done for lane in lanes):
            return changed
        failed = counts.get("failed", 0)
        if run.cancelled is not None and counts.get("cancelled", 0):
            run.state = "cancelled"
            run.reason = run.reason or self._cancel_reason()
        elif failed or stopped:
            run.state = "failed"
            first = next(lane for lane in lanes if lane.state == "failed") if failed else None
            run.reason = run.reason or (f"{failed} of {run.lanes} failed; first: {first.target}: {first.reason}"
                                        if first else "failed")
        else:
            run.state = "succeeded"
            left = counts.get("left", 0)
            run.reason = f"{counts.get('succeeded', 0)} succeeded" + (f", {left} left the members" if left else "")
        run.finished_ms = now_ms
        run.note(now_ms, f"run {run.state}: {run.reason}")
        return changed
