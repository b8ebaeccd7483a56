"""The orchestrator: a batch agent on `runs` that `vigil executor` runs beside the executor agent.

    rule action runbook:/roll: ──> actions ──> executor (plugin `runbook`/`roll`) ──> runs (start)
    vigil approve / runs cancel|pause|resume ─────────────────────────────────────> runs
    runs ──> orchestrator ──> steps: ActionRunner + ledger `run_ledger` ──> action-results (one each)
                  │                                                    └─> actions (the step, for the record)
                  └─> run-states (compacted: what each run looks like; `vigil runs`)

State lives in two changelogged tables co-partitioned with `runs` (keyed by run id): `runs` holds
each run's header (`run/ID`), its lanes (`lane/ID/000042`) and the partition's unfinished runs
(`active`); `run_ledger` is the executor's once-only ledger for step actions. A step's action id
is derived from (run, lane, step, visit), its "started" is made durable before a plugin that is not
idempotent runs, and its "finished" is written with its result and the lane's new state in the same
commit -- so a run survives SIGKILLs and restarts, resumes at its first unfinished step, and never
runs a step twice (an interrupted non-idempotent step is reported FAILED, as the executor does, and
the runbook's on_failure decides). An idempotent step (http: the Idempotency-Key is its action id)
starts without a commit of its own: after a crash it is run again with the same id, which its
receiver deduplicates (a commit per start was most of a roll's scheduling overhead).

One agent call ("turn") starts every step that can start now, across the partition's runs, waits
for them (and polls due waits) and starts the next ones as they finish, for at most `slice`; then
it lets the worker take other records and arms the wall timer `drive` for the next thing due
(splay, a poll, an approval's deadline). Idempotent steps still running then stay in flight, and
end in the next turn (app.orchestration.carry); the others are waited for. A turn that is killed
leaves that timer armed (it is set before anything else), so a restart resumes the runs without
any new record.

Limits: a turn blocks the worker's loop like an executor batch does, so a step must end well
within the consumer's max.poll.interval.ms (5 minutes), and commands (approve, cancel) are read
between turns (at most `slice` late). Runs on different partitions of `runs` take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final

from app.executor.config import ExecutorConfig
from app.executor.egress import Resolver
from app.executor.plugin import PluginRegistry
from app.executor.runner import ActionRunner, BatchState, GroupCheckpoint
from app.model.events import Action, ActionResult
from app.model.signing import sign_action
from app.orchestration.carry import Flight, TurnGate, turn_can_end
from app.orchestration.conditions import parse_conditions
from app.orchestration.config import OrchestrationConfig
from app.orchestration.definitions import DefinitionsLoader
from app.orchestration.machine import LANE_DONE, Lane, Machine, Poll, Run, StartAction, Work
from app.orchestration.members import MembersView, select_members
from app.orchestration.records import RUN_STATES_TOPIC, RUNS_TOPIC, verify_record
from app.orchestration.runbooks import Runbook, RunbookError, runbook_from_raw
from app.orchestration.sources import ConditionSource, SourceError, WorkersSource, evaluate
from app.rules.source import ErrorSink
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.tables import Table
from app.web.workers import WorkersClient

__all__ = ["DRIVE_TIMER", "Orchestrator", "SourceFactory", "workers_source"]

log = logging.getLogger(__name__)

DRIVE_TIMER: Final = "drive"
_FORGET: Final = "forget:"
_ACTIVE: Final = "active"
_ACTIONS_TOPIC: Final = "actions"
_PUBLISH_EVERY_S: Final = 1.0
#: After the slice, how often the turn looks whether what is left in flight may outlive it.
_END_CHECK_S: Final = 0.01

#: Opens a condition source for one turn (closed at its end).
SourceFactory = Callable[[], AbstractAsyncContextManager[ConditionSource]]


def workers_source(urls: list[str], token: bytes | None) -> SourceFactory:
    """Conditions read from the workers' query routes (a client per turn, on the turn's loop)."""

    @contextlib.asynccontextmanager
    async def open_source() -> AsyncIterator[ConditionSource]:
        client = WorkersClient(urls, token=token)
        try:
            yield WorkersSource(client)
        finally:
            await client.close()

    return open_source


def _run_key(run_id: str) -> str:
    return f"run/{run_id}"


def _lane_key(run_id: str, index: int) -> str:
    return f"lane/{run_id}/{index:06d}"


@dataclass(eq=False)
class _Loaded:
    """One run being driven in a turn: header, lanes, machine, and what changed."""

    run: Run
    lanes: list[Lane]
    machine: Machine | None
    dirty: set[int] = field(default_factory=set)
    changed: bool = False
    published_at: float = 0.0
    #: each lane's JSON as last written or shown, by index: the snapshot published every second shows
    #: up to 2,000 lanes, and making each anew was 5% of a roll's CPU (benchmarks/orchestration.py)
    lane_json: dict[int, dict[str, Any]] = field(default_factory=dict)

    def lane_as_json(self, lane: Lane) -> dict[str, Any]:
        """The lane's JSON (a lane changes only through `Orchestrator._write`, which refreshes it)."""
        made = self.lane_json.get(lane.index)
        if made is None:
            made = self.lane_json[lane.index] = lane.to_json()
        return made


@dataclass(eq=False)
class _Kept:
    """A partition's runs as its last agent call left them, kept for the next call: reading a
    roll's 1,000 lanes back from the table took 10-15 ms of each turn boundary, while steps whose
    result had come waited (benchmarks/orchestration.py)."""

    #: the partition's `runs` store they were read from and written to: if it was opened again since
    #: (a rewind, the partition went away and came back), they are read again
    store: object
    runs: dict[str, _Loaded] = field(default_factory=dict)


@dataclass(eq=False)
class _Carried:
    """A partition's steps in flight between two turns (see app.orchestration.carry)."""

    #: the partition's `runs` store they started with: if it was opened again since, they are dropped
    store: object
    gate: TurnGate
    batch: BatchState
    tasks: dict[asyncio.Task[None], Flight]


class Orchestrator:
    """The orchestrator agent and its tables (see the module docstring)."""

    def __init__(self, config: OrchestrationConfig, executor_config: ExecutorConfig, *, plugins: PluginRegistry,
                 definitions: DefinitionsLoader, members: MembersView, source: SourceFactory,
                 signing_key: bytes | None = None, registry: AgentRegistry | None = None,
                 resolver: Resolver | None = None) -> None:
        self.config = config
        self.definitions = definitions
        self.members = members
        self.open_source = source
        self.signing_key = signing_key
        self.state = Table("runs", default=None, help="orchestration runs: headers, lanes, the unfinished ones")
        self.ledger = Table("run_ledger", default=None, help="step action id -> started/finished (once-only)")
        self.runner = ActionRunner(executor_config, plugins, self.ledger, signing_key, resolver=resolver)
        self._runbooks: dict[str, Runbook] = {}
        #: per partition of `runs`: steps still in flight when its last turn ended (see carry.py)
        self._carried: dict[int, _Carried] = {}
        #: per partition of `runs`: the runs its agent calls loaded, as written (see _Kept)
        self._kept: dict[int, _Kept] = {}
        #: the runs of the turn in progress, by id
        self._turn_runs: dict[str, _Loaded] = {}
        self.agent: Agent = agent(RUNS_TOPIC, name="orchestrator", tables=[self.state, self.ledger], batch=True,
                                  decode="json", dlq_topic="actions-dlq",
                                  registry=registry or AgentRegistry())(self.on_records)
        self.agent.on_timer(self.on_timer)
        self.agent.on_close(self.runner.aclose)  # the steps' kept HTTP connections

    # -- entry points -------------------------------------------------------------------------------------------
    async def on_records(self, values: list[Any], ctx: AgentContext) -> None:
        """Commands from `runs` (start, approve, cancel, pause, resume), then a turn."""
        with self._keeping(ctx):
            self._arm(ctx, ctx.now_ms() + self.config.slice_ms + 1_000)  # watchdog: a killed turn resumes
            for value in values:
                try:
                    self._command(value, ctx)
                except Exception:  # one bad command must not stop the others (nor loop forever)
                    log.exception("orchestrator: command %r failed", value if isinstance(value, dict) else "?")
            await self.drive(ctx)

    async def on_timer(self, key: str, payload: Any, ctx: AgentContext) -> None:
        """`drive`: the next thing due; `forget:ID`: a finished run's retention ended."""
        with self._keeping(ctx):
            if key.startswith(_FORGET):
                self._forget(key[len(_FORGET):], ctx)
                return
            self._arm(ctx, ctx.now_ms() + self.config.slice_ms + 1_000)
            await self.drive(ctx)

    @contextlib.contextmanager
    def _keeping(self, ctx: AgentContext) -> Iterator[None]:
        """An agent call: the runs kept from the last one are used if the partition's store is the
        one they were read from; if the call fails, the engine rolls back its table writes, so what
        it did to them is forgotten too."""
        kept = self._kept.get(ctx.partition)
        if kept is None or kept.store is not self.state.active:
            self._kept[ctx.partition] = _Kept(self.state.active)
        try:
            yield
        except BaseException:
            self._kept.pop(ctx.partition, None)
            raise

    # -- commands --------------------------------------------------------------------------------------------
    def _command(self, value: Any, ctx: AgentContext) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("run"), str) or not value["run"]:
            log.warning("orchestrator: ignored a record on %s that is not a command: %.200r", RUNS_TOPIC, value)
            return
        if not verify_record(value, self.signing_key):
            log.warning("orchestrator: refused an unsigned or wrongly signed %s command for run %s",
                        value.get("kind"), value["run"])
            return
        kind, run_id, now = value.get("kind"), value["run"], ctx.now_ms()
        if kind == "start":
            self._start(value, now)
            return
        loaded = self._load(run_id, ctx)
        if loaded is None or loaded.machine is None:
            log.warning("orchestrator: %s for unknown or finished run %s ignored", kind, run_id)
            return
        machine, by = loaded.machine, str(value.get("by") or "?")
        if loaded.run.done:
            loaded.run.note(now, f"{kind} by {by} ignored: the run has ended ({loaded.run.state})")
        elif kind == "approve":
            decided = machine.approve(loaded.lanes, by=by, approved=bool(value.get("approved", True)),
                                      comment=str(value.get("comment") or ""), now_ms=now,
                                      step=value.get("step"), member=value.get("member"))
            loaded.dirty.update(lane.index for lane in decided)
            waiting = any(lane.state == "running" and lane.phase == "approval" for lane in loaded.lanes)
            if not decided and not waiting:
                loaded.run.note(now, f"approval by {by} found no step waiting for it")
        elif kind == "cancel":
            loaded.dirty.update(lane.index for lane in machine.cancel(loaded.lanes, by=by,
                                                                        reason=str(value.get("reason") or ""),
                                                                        now_ms=now))
        elif kind in ("pause", "resume"):
            machine.pause(by=by, paused=kind == "pause", now_ms=now)
        else:
            log.warning("orchestrator: unknown command %r for run %s", kind, run_id)
            return
        loaded.changed = True
        self._save(loaded, ctx)

    def _start(self, record: dict[str, Any], now_ms: int) -> None:
        run_id = str(record["run"])
        if self.state.get(_run_key(run_id)) is not None:
            log.info("orchestrator: run %s already exists; start ignored", run_id)
            return
        roll = record.get("roll")
        target = str(record.get("target") or "")
        run = Run(id=run_id, name=str(record.get("name") or "run"), runbook=dict(record.get("runbook") or {}),
                  created_ms=now_ms, params=dict(record.get("params") or {}), target=target,
                  rule=str(record.get("rule") or ""), trace_id=record.get("trace_id"),
                  event_id=record.get("event_id"), group_key=str(record.get("group_key") or ""),
                  chain=list(record.get("chain") or []), requested_by=str(record.get("by") or ""),
                  roll=dict(roll) if isinstance(roll, dict) else None)
        lanes: list[Lane] = []
        if run.roll is None:
            run.lanes, lanes = 1, [Lane(0, target)]
        run.note(now_ms, f"started by {run.requested_by or '?'}" + (f" for {target}" if target else ""))
        loaded = _Loaded(run, lanes, None, dirty={lane.index for lane in lanes}, changed=True)
        try:
            loaded.machine = Machine(run, self._runbook(run))
        except RunbookError as exc:
            self._fail(loaded, now_ms, f"its runbook does not parse: {exc}")
        active = list(self.state.get(_ACTIVE) or [])
        if run_id not in active and not run.done:
            self.state[_ACTIVE] = [*active, run_id]
        self._write(loaded)
        log.info("orchestrator: run %s (%s) started%s", run_id, run.name,
                 f" over members {run.roll.get('members')}" if run.roll else f" for {target}")

    # -- loading and saving ------------------------------------------------------------------------------------
    def _runbook(self, run: Run) -> Runbook:
        from hashlib import sha256

        digest = sha256(json.dumps(run.runbook, sort_keys=True).encode()).hexdigest()
        runbook = self._runbooks.get(digest)
        if runbook is None:
            rules = self.definitions.current().rules
            runbook = runbook_from_raw(run.runbook, file=f"run {run.id}", rules=rules.get)
            if len(self._runbooks) > 256:
                self._runbooks.clear()
            self._runbooks[digest] = runbook
        return runbook

    def _load(self, run_id: str, ctx: AgentContext) -> _Loaded | None:
        """The run as kept from the partition's last agent call (see _Kept), else read from the table."""
        runs = self._kept[ctx.partition].runs
        loaded = runs.get(run_id)
        if loaded is None:
            loaded = self._read(run_id)
            if loaded is not None:
                runs[run_id] = loaded
        return loaded

    def _read(self, run_id: str) -> _Loaded | None:
        header = self.state.get(_run_key(run_id))
        if header is None:
            return None
        run = Run.from_json(header)
        lanes = [Lane.from_json(v) for _, v in self.state.items(f"lane/{run_id}/")]
        try:
            machine: Machine | None = Machine(run, self._runbook(run))
        except RunbookError as exc:
            log.warning("orchestrator: run %s: %s", run_id, exc)
            machine = None
        return _Loaded(run, lanes, machine)

    def _write(self, loaded: _Loaded) -> None:
        run = loaded.run
        self.state[_run_key(run.id)] = run.to_json()
        for index in sorted(loaded.dirty):
            made = loaded.lane_json[index] = loaded.lanes[index].to_json()
            self.state[_lane_key(run.id, index)] = made
        loaded.dirty.clear()

    def _save(self, loaded: _Loaded, ctx: AgentContext) -> None:
        """Write what changed; a run that ended leaves `active`, is published and is forgotten later."""
        self._write(loaded)
        if loaded.run.done:
            active = list(self.state.get(_ACTIVE) or [])
            if loaded.run.id in active:
                active.remove(loaded.run.id)
                self.state[_ACTIVE] = active
                ctx.timers.schedule(_FORGET + loaded.run.id, ctx.now_ms() + self.config.retention_ms, kind="wall")
        if loaded.changed:
            self._publish(loaded, ctx)

    def _publish(self, loaded: _Loaded, ctx: AgentContext) -> None:
        run = loaded.run
        shown = loaded.lanes[: self.config.snapshot_lanes]
        steps = [step.get("name") for step in run.runbook.get("steps", []) if isinstance(step, dict)]
        snapshot = {**{k: v for k, v in run.to_json().items() if k != "runbook"}, "steps": steps,
                    "lanes": [loaded.lane_as_json(lane) for lane in shown], "lanes_shown": len(shown),
                    "time": ctx.now_ms()}
        ctx.send(RUN_STATES_TOPIC, run.id, snapshot)
        loaded.changed, loaded.published_at = False, time.monotonic()

    def _fail(self, loaded: _Loaded, now_ms: int, reason: str) -> None:
        run = loaded.run
        for lane in loaded.lanes:
            if lane.state not in LANE_DONE:
                lane.state, lane.finished_ms, lane.reason = "cancelled", now_ms, reason
                loaded.dirty.add(lane.index)
        run.state, run.reason, run.finished_ms = "failed", reason, now_ms
        run.note(now_ms, f"run failed: {reason}")
        loaded.changed = True
        log.warning("orchestrator: run %s failed: %s", run.id, reason)

    def _forget(self, run_id: str, ctx: AgentContext) -> None:
        loaded = self._load(run_id, ctx)
        self._kept[ctx.partition].runs.pop(run_id, None)
        if loaded is not None:
            for lane in loaded.lanes:
                for record in lane.steps.values():
                    if record.get("action_id"):
                        self.ledger.pop(str(record["action_id"]))
                self.state.pop(_lane_key(run_id, lane.index))
            self.state.pop(_run_key(run_id))
        ctx.send(RUN_STATES_TOPIC, run_id, None)  # a tombstone: `vigil runs` forgets it too

    def _arm(self, ctx: AgentContext, at_ms: int) -> None:
        ctx.timers.schedule(DRIVE_TIMER, at_ms, kind="wall")

    # -- a turn ------------------------------------------------------------------------------------------------
    def _discover(self, loaded: _Loaded, now_ms: int) -> None:
        """Freeze a roll's members (once the members view has been read)."""
        run = loaded.run
        if run.roll is None or run.lanes or run.done:
            return
        if not self.members.ready():
            if now_ms - run.created_ms > self.config.members_wait_ms:
                self._fail(loaded, now_ms, f"the members view was not read within "
                                           f"{self.config.members_wait_ms // 1000}s (is the `members` topic there?)")
            return
        selector = run.roll.get("members") or {}
        found = select_members(self.members.members(), str(selector.get("host") or "*"),
                               dict(selector.get("tags") or {}))
        if not found:
            self._fail(loaded, now_ms, f"no alive member matches {selector}")
            return
        loaded.lanes = [Lane(i, m.host, dict(m.tags)) for i, m in enumerate(found)]
        loaded.dirty.update(range(len(found)))
        run.lanes = len(found)
        run.note(now_ms, f"{len(found)} member(s): " + ", ".join(m.host for m in found[:20])
                 + (" ..." if len(found) > 20 else ""))
        loaded.changed = True

    async def drive(self, ctx: AgentContext) -> None:
        """One turn over the partition's unfinished runs (see the module docstring)."""
        carried = self._carried.pop(ctx.partition, None)
        if carried is not None and carried.store is not self.state.active:
            # The partition's stores were opened again since (a rewind, or the partition went away and
            # came back): what these steps would write may no longer fit. They are idempotent: stopped
            # here, they run again from the restored state with the same action ids.
            log.warning("orchestrator: %d step(s) in flight dropped: the partition's state was restored",
                        len(carried.tasks))
            for task in carried.tasks:
                if task.get_loop() is asyncio.get_running_loop():  # else its loop is gone, and the task with it
                    task.cancel()
            carried = None
        ids = list(self.state.get(_ACTIVE) or [])
        if not ids and carried is None:
            ctx.timers.cancel(DRIVE_TIMER)
            return
        kept = self._kept[ctx.partition].runs
        for gone in set(kept).difference(ids):  # ended (or forgotten): no longer driven
            del kept[gone]
        runs = {run_id: loaded for run_id in ids if (loaded := self._load(run_id, ctx)) is not None}
        if carried is None:
            gate = TurnGate()
            batch = BatchState(slots=asyncio.Semaphore(self.config.max_in_flight),
                               durable=GroupCheckpoint(ctx.checkpoint), durable_idempotent=False, in_turn=gate.wait)
            tasks: dict[asyncio.Task[None], Flight] = {}
        else:
            gate, batch, tasks = carried.gate, carried.batch, carried.tasks
        started = time.monotonic()
        self._turn_runs = runs
        gate.open()
        ended = False
        try:
            async with self.open_source() as source:
                while True:
                    starting = time.monotonic() - started < self.config.slice_ms / 1000
                    busy = {(f.run_id, f.lane) for f in tasks.values()}
                    for loaded in runs.values():
                        if starting:
                            for work in self._plan(loaded, ctx, busy):
                                task = asyncio.ensure_future(self._do(work, loaded, ctx, batch, source))
                                tasks[task] = self._flight(loaded.run.id, work)
                        self._settle(loaded, ctx)
                    if not tasks or (not starting and turn_can_end(tasks.values(), batch.parked)):
                        break
                    # After the slice: wait for a step that must finish in this turn, or look again soon
                    # whether the steps left are parked.
                    must_finish = any(not f.may_carry for f in tasks.values())
                    timeout: float | None = None if must_finish else _END_CHECK_S
                    if starting:  # wake for the next thing due, or at the end of the slice
                        left_s = self.config.slice_ms / 1000 - (time.monotonic() - started)
                        due_s = self._sleep_s(runs, ctx)
                        timeout = max(0.05, left_s if due_s is None else min(due_s, left_s))
                    done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del tasks[task]
                        task.result()  # _do never raises an Exception; a CheckpointFailed stops the turn
            ended = True
        finally:
            gate.close()
            self._turn_runs = {}
            if ended and tasks:  # idempotent steps whose plugin runs on: finished in the next turn
                self._carried[ctx.partition] = _Carried(self.state.active, gate, batch, tasks)
            else:
                for task in tasks:
                    task.cancel()
        for loaded in runs.values():
            self._settle(loaded, ctx)
        self._arm_next(runs, ctx)

    def _flight(self, run_id: str, work: Work) -> Flight:
        if not isinstance(work, StartAction):
            return Flight(run_id, work.lane, None, may_carry=False)
        spec = self.runner.plugins.get(work.type)
        return Flight(run_id, work.lane, work.action_id, may_carry=spec is not None and spec.idempotent)

    def _plan(self, loaded: _Loaded, ctx: AgentContext, busy: set[tuple[str, int]]) -> list[Work]:
        machine, run, now = loaded.machine, loaded.run, ctx.now_ms()
        if machine is None or run.done:
            return []
        self._discover(loaded, now)
        if run.done or (run.roll is not None and not run.lanes):
            return []
        plan: list[Work] = []
        self._lane_work(loaded, [lane for lane in loaded.lanes if lane.state == "running"], now, busy, plan)
        admitted = machine.admit(loaded.lanes, now, self.members.present)
        if admitted:
            loaded.dirty.update(lane.index for lane in admitted)
            loaded.changed = True
            self._lane_work(loaded, admitted, now, busy, plan)
        if loaded.dirty:
            self._write(loaded)
        return plan

    def _lane_work(self, loaded: _Loaded, lanes: list[Lane], now: int, busy: set[tuple[str, int]],
                   plan: list[Work]) -> None:
        machine = loaded.machine
        assert machine is not None
        for lane in lanes:
            if lane.state != "running" or (loaded.run.id, lane.index) in busy:
                continue
            before = (lane.step, lane.phase, lane.state, lane.not_before_ms, lane.deadline_ms, id(lane.steps))
            work = machine.work(lane, now, self.members.present)
            if work is not None:
                plan.append(work)
            after = (lane.step, lane.phase, lane.state, lane.not_before_ms, lane.deadline_ms, id(lane.steps))
            if work is not None or before != after:
                loaded.dirty.add(lane.index)
                loaded.changed = True

    def _settle(self, loaded: _Loaded, ctx: AgentContext) -> None:
        if loaded.machine is None:
            return
        was = loaded.run.state
        counts = dict(loaded.run.counts)
        for lane in loaded.machine.settle(loaded.lanes, ctx.now_ms()):
            loaded.dirty.add(lane.index)
        if loaded.run.state != was or loaded.run.counts != counts:
            loaded.changed = True
        if loaded.changed and (loaded.run.done or time.monotonic() - loaded.published_at >= _PUBLISH_EVERY_S):
            self._save(loaded, ctx)
        elif loaded.dirty:
            self._write(loaded)

    def _sleep_s(self, runs: dict[str, _Loaded], ctx: AgentContext) -> float | None:
        wakes = [w for loaded in runs.values() if loaded.machine is not None and not loaded.run.done
                 and (w := loaded.machine.wake_ms(loaded.lanes)) is not None]
        if not wakes:
            return None
        return max(0.0, (min(wakes) - ctx.now_ms()) / 1000)

    def _arm_next(self, runs: dict[str, _Loaded], ctx: AgentContext) -> None:
        for loaded in runs.values():
            if loaded.changed:
                self._save(loaded, ctx)
        pending = [loaded for loaded in runs.values() if not loaded.run.done]
        if not pending:
            ctx.timers.cancel(DRIVE_TIMER)
            return
        now = ctx.now_ms()
        wakes = [loaded.machine.wake_ms(loaded.lanes) if loaded.machine else None for loaded in pending]
        # Something can start now (a slot freed at the end of the slice, a member to discover): soon.
        runnable = any(loaded.machine is not None and (not loaded.run.paused) and (
            loaded.run.next_lane < loaded.run.lanes or (loaded.run.roll is not None and not loaded.run.lanes)
            or any(lane.state == "running" and lane.phase in ("", "action") and lane.not_before_ms is None
                   for lane in loaded.lanes)) for loaded in pending)
        due = [w for w in wakes if w is not None]
        at = now + 20 if runnable else (min(due) if due else now + 60_000)
        if self._carried.get(ctx.partition):
            # Steps in flight progress only in a turn (the engine's loop runs in agent calls): the next
            # one as soon as the worker has taken what came meanwhile.
            at = now
        self._arm(ctx, at if at == now else max(at, now + 10))

    # -- doing the work ----------------------------------------------------------------------------------------
    def _current(self, loaded: _Loaded) -> _Loaded | None:
        """The run as this turn loaded it: a step that outlived the turn it started in (see
        app.orchestration.carry) writes its end into this turn's copy, which has the commands (cancel,
        pause) that came between."""
        return self._turn_runs.get(loaded.run.id)

    async def _do(self, work: Work, loaded: _Loaded, ctx: AgentContext, batch: BatchState,
                  source: ConditionSource) -> None:
        try:
            if isinstance(work, StartAction):
                await self._run_step(work, loaded, ctx, batch)
            else:
                await self._poll(work, loaded, ctx, source)
        except Exception as exc:  # a bug must not stop the other lanes: this lane's step fails instead
            log.exception("orchestrator: run %s lane %d step %s", loaded.run.id, work.lane, work.step)
            await batch.in_turn()
            current = self._current(loaded)
            if current is None:
                return
            loaded = current
            machine, lane = loaded.machine, loaded.lanes[work.lane]
            if machine is not None and isinstance(work, StartAction):
                machine.action_finished(lane, work.step, status="FAILED", error=f"orchestrator error: {exc}",
                                        now_ms=ctx.now_ms())
            elif machine is not None:
                machine.polled(lane, work.step, holds=False, reason=f"orchestrator error: {exc}",
                               now_ms=ctx.now_ms())
            loaded.dirty.add(work.lane)
            loaded.changed = True
            self._write(loaded)

    def _action(self, run: Run, work: StartAction, now_ms: int) -> Action:
        action = Action(id=work.action_id, time=now_ms, rule=run.rule or f"runbook:{run.name}", type=work.type,
                        target=work.target, params=json.dumps(work.params, sort_keys=True, separators=(",", ":")),
                        group_key=run.group_key, event_id=run.event_id, trace_id=run.trace_id,
                        deadline=work.deadline_ms, chain=list(run.chain), run=f"{run.id}/{work.step}")
        if self.signing_key is None:
            return action
        return action.model_copy(update={"signature": sign_action(action.to_record(), self.signing_key)})

    async def _run_step(self, work: StartAction, loaded: _Loaded, ctx: AgentContext, batch: BatchState) -> None:
        lane, machine = loaded.lanes[work.lane], loaded.machine
        assert machine is not None
        now = ctx.now_ms()
        action = self._action(loaded.run, work, now)
        record = lane.steps.get(work.step, {})
        if not record.get("published"):
            # On `actions` for the record (history, the UI, traces); executors skip it (it has `run`).
            ctx.send(_ACTIONS_TOPIC, action.target, action)
            lane.steps = {**lane.steps, work.step: {**record, "published": True}}
            loaded.dirty.add(lane.index)
            self._write(loaded)
        # Built and signed here: no record to decode, no signature to check (the signature is for the
        # record on `actions`).
        result = await self.runner.handle_own(action, ctx, batch)
        # No await from here to the write: a checkpoint cannot fall between the ledger's "finished"
        # (written with the result) and the lane's new state.
        current = self._current(loaded)
        if current is None or current.machine is None:  # the run is gone from this partition's state
            log.warning("orchestrator: run %s lane %d: step %s ended (%s) but the run is not loaded now",
                        loaded.run.id, work.lane, work.step, getattr(result.status, "value", result.status))
            return
        loaded, lane, machine = current, current.lanes[work.lane], current.machine
        status, output, error = self._outcome(result, action.id)
        machine.action_finished(lane, work.step, status=status, output=output, error=error,
                                attempts=result.attempts if result else 0,
                                started_ms=result.started if result else None, now_ms=ctx.now_ms())
        loaded.dirty.add(lane.index)
        loaded.changed = True
        self._write(loaded)

    def _outcome(self, result: ActionResult | None, action_id: str) -> tuple[str, str, str]:
        if result is None:
            return "FAILED", "", "the step's action was not a valid action"
        status = str(getattr(result.status, "value", result.status))
        if status != "DUPLICATE":
            return status, result.output, result.error
        entry = self.ledger.get(action_id) or {}
        # Finished before a restart whose lane state was lost with it: the ledger keeps the status.
        return str(entry.get("status") or "FAILED"), "(finished before a restart; output not kept)", ""

    async def _poll(self, work: Poll, loaded: _Loaded, ctx: AgentContext, source: ConditionSource) -> None:
        lane, machine = loaded.lanes[work.lane], loaded.machine
        assert machine is not None
        sink = ErrorSink(f"run {loaded.run.id}")
        rules = self.definitions.current().rules
        conditions = parse_conditions(work.conditions, sink, 0, what=f"step {work.step}.wait_for", rules=rules.get)
        if sink.errors:
            holds, reason = False, "; ".join(e.message for e in sink.errors)
        else:
            now = ctx.now_ms()
            try:
                results = await evaluate(conditions, source, now)
            except SourceError as exc:
                holds, reason = False, f"cannot judge now: {exc}"
            else:
                holds = all(r.holds and r.stable for r in results)
                reason = "; ".join(f"{r.label}: {r.reason}" for r in results)
        machine.polled(lane, work.step, holds=holds, reason=reason, now_ms=ctx.now_ms())
        loaded.dirty.add(lane.index)
        loaded.changed = True
        self._write(loaded)
