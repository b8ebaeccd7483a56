"""Running one action: check it, consult the ledger, run the plugin with timeouts and retries,
and publish exactly one result. Used by the executor agent (agent.py) inside an agent call.

Per action, in order:
    1. not a vigil.Action                  -> REJECTED (dead-lettered; the ledger is not touched)
    2. signature missing/wrong (key set)   -> REJECTED (dead-lettered; the ledger is not touched,
                                              so a forged record cannot claim a real action's id)
    3. ledger: finished / running now      -> DUPLICATE (informational; never run again)
               started, not idempotent     -> FAILED "interrupted" (dead-lettered; not re-run)
    4. unknown type, bad params            -> REJECTED (dead-lettered)
    5. past its deadline                   -> EXPIRED (checked again just before each attempt)
    6. ledger[id] = started, commit        -> only then the plugin runs (an idempotent plugin: the commit
                                              only if BatchState.durable_idempotent)
    7. attempts with backoff               -> SUCCEEDED | FAILED | TIMED_OUT | REJECTED
                                              (anything but SUCCEEDED is dead-lettered)
    8. ledger[id] = finished + the result  -> committed together
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from app.executor.config import ExecutorConfig
from app.executor.egress import EgressGuard, Resolver
from app.executor.http_clients import PinnedClients
from app.executor.ledger import Decision, decide, finished_entry, needs_durable_start, started_entry
from app.executor.plugin import (
    ActionCall,
    ActionFailed,
    ActionRejected,
    ActionTimedOut,
    PendingSend,
    PluginRegistry,
    PluginSpec,
)
from app.executor.policy import backoff_s, expired, should_retry, truncate
from app.model.events import Action, ActionResult, ResultStatus
from app.model.ids import deterministic_id, new_id
from app.model.signing import verify_action
from app.runtime.context import AgentContext
from app.runtime.engine import CheckpointFailed  # re-exported: raised when 'started' is not durable
from app.runtime.tables import Table

__all__ = [
    "DLQ_TOPIC",
    "RESULTS_TOPIC",
    "ActionRunner",
    "BatchState",
    "CheckpointFailed",
    "GroupCheckpoint",
    "parse_params",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

RESULTS_TOPIC = "action-results"
DLQ_TOPIC = "actions-dlq"
#: A plugin that enforces its own time limit gets this long (at most the limit itself) beyond it to
#: report, with its output, before the executor stops waiting.
_GRACE_S = 1.0


class GroupCheckpoint:
    """`await durable()`: one ctx.checkpoint() (a commit) shared by every action that asks for it
    in the same event-loop turn, so concurrent starts cost one commit rather than one each."""

    def __init__(self, checkpoint: Callable[[], None]) -> None:
        self._checkpoint = checkpoint
        self._waiting: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        if self._waiting is None:
            loop = asyncio.get_running_loop()
            self._waiting = loop.create_future()
            loop.call_soon(self._commit)
        await asyncio.shield(self._waiting)

    def _commit(self) -> None:
        waiting, self._waiting = self._waiting, None
        assert waiting is not None
        try:
            self._checkpoint()
        except (Exception, CheckpointFailed) as exc:  # the runtime raises CheckpointFailed itself
            failed = CheckpointFailed(f"cannot make 'started' durable, not running actions: {exc}")
            failed.__cause__ = exc
            waiting.set_exception(failed)
        else:
            waiting.set_result(None)


async def _at_once() -> None:
    """An agent call's actions run inside it: tables may always be written."""


@dataclass
class BatchState:
    """What the actions of one agent call share."""

    slots: asyncio.Semaphore
    durable: Callable[[], Awaitable[None]]
    running: set[str] = field(default_factory=set)
    #: Whether an idempotent plugin also waits for a durable "started" before it runs. Not needed for
    #: once-only: after a crash an idempotent action is run again with the same Idempotency-Key
    #: either way (a "started" that was not durable is absent: RUN, else RESUME); the wait only keeps
    #: the attempt count and first start time across the crash. The orchestrator turns it off
    #: (a commit per start was most of a roll's scheduling overhead).
    durable_idempotent: bool = True
    #: Waits until the tables may be written (see app.orchestration.carry: the orchestrator's steps
    #: outlive its turn while their plugin runs); returns without suspending when they may now.
    in_turn: Callable[[], Awaitable[None]] = _at_once
    #: ids of the actions whose plugin runs now or that wait to retry: they touch no table meanwhile
    parked: set[str] = field(default_factory=set)


@dataclass
class _Outcome:
    status: ResultStatus
    output: str = ""
    error: str = ""
    retryable: bool = True
    sends: list[PendingSend] = field(default_factory=list)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, default=str, separators=(",", ":"))


def parse_params(text: str) -> dict[str, Any]:
    """An action's params (a JSON object string); ValueError saying what is wrong."""
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"params are not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ValueError(f"params must be a JSON object, got {type(params).__name__}")
    return params


class ActionRunner:
    """Runs actions for the executor agent (state: the ledger table of the active partition)."""

    def __init__(self, config: ExecutorConfig, plugins: PluginRegistry, ledger: Table,
                 signing_key: bytes | None, *, rng: random.Random | None = None,
                 resolver: Resolver | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.ledger = ledger
        self.signing_key = signing_key
        self.rng = rng or random.Random()
        #: one guard for every attempt: the outbound allowlist, with `resolver` (default: the system's),
        #: and HTTP connections kept between requests to the same vetted destination
        self.egress = EgressGuard(config.outbound, resolver=resolver, clients=PinnedClients())

    async def aclose(self) -> None:
        """Close what the runner keeps between actions (its HTTP connections); for Agent.on_close."""
        if self.egress.clients is not None:
            await self.egress.clients.aclose()

    # -- entry point ------------------------------------------------------------------------------
    async def handle(self, value: Any, ctx: AgentContext, batch: BatchState) -> ActionResult | None:
        """Process one consumed record; publishes its result and returns it (None for a record that
        is not an action). Never raises an Exception."""
        try:
            action = Action.from_record(value)
            if not action.id:
                raise ValueError("id is empty")
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            self._reject_malformed(value, ctx, exc)
            return None
        return await self._guarded(action, value, ctx, batch)

    async def handle_own(self, action: Action, ctx: AgentContext, batch: BatchState) -> ActionResult:
        """Process an action this process built itself (an orchestration step): steps 3-8 of the
        module docstring, without decoding a record or checking its signature (there is no record
        from outside to check). Publishes its result and returns it. Never raises an Exception."""
        return await self._guarded(action, None, ctx, batch)

    async def _guarded(self, action: Action, value: dict[str, Any] | None, ctx: AgentContext,
                       batch: BatchState) -> ActionResult:
        """`value`: the record to check the signature of (None: built here, nothing to check)."""
        try:
            if value is not None and self.signing_key is not None and not verify_action(value, self.signing_key):
                why = "has no signature" if not action.signature else "has a wrong signature"
                return self._finish(ctx, action, ResultStatus.REJECTED, record=False, dlq=True,
                                    error=f"action {why}: this executor only runs actions signed with the shared "
                                          f"key")
            return await self._handle(action, ctx, batch)
        except Exception as exc:  # a bug here must not roll back (and so re-run) the whole batch
            log.exception("executor error on action %s", action.id)
            return self._finish(ctx, action, ResultStatus.FAILED,
                                error=f"executor error: {type(exc).__name__}: {exc}", dlq=True)

    async def _handle(self, action: Action, ctx: AgentContext, batch: BatchState) -> ActionResult:
        spec = self.plugins.get(action.type)
        entry = self.ledger.get(action.id)
        decision = decide(entry, idempotent=spec is not None and spec.idempotent,
                          running_here=action.id in batch.running)
        if decision is Decision.DUPLICATE:
            return self._duplicate(ctx, action, entry)
        if decision is Decision.INTERRUPTED:
            assert entry is not None
            return self._finish(ctx, action, ResultStatus.FAILED, attempts=entry.get("attempts", 1),
                                started_ms=entry.get("started_ms"), dlq=True,
                                error=f"interrupted: the executor stopped while this action was running; not "
                                      f"re-run because plugin {action.type!r} is not idempotent (it may or may "
                                      f"not have taken effect)")
        if spec is None:
            return self._finish(ctx, action, ResultStatus.REJECTED, dlq=True,
                                error=f"unknown action type {action.type!r} (plugins: "
                                      f"{', '.join(self.plugins.names())})")
        try:
            params = parse_params(action.params)
        except ValueError as exc:
            return self._finish(ctx, action, ResultStatus.REJECTED, error=str(exc), dlq=True)
        if expired(action.deadline, ctx.now_ms()):
            return self._expired(ctx, action, resumed=decision is Decision.RESUME)
        batch.running.add(action.id)
        try:
            return await self._run(action, spec, params, entry if decision is Decision.RESUME else None, ctx,
                                   batch)
        finally:
            batch.running.discard(action.id)

    # -- running ----------------------------------------------------------------------------------
    async def _run(self, action: Action, spec: PluginSpec, params: dict[str, Any], resumed: dict[str, Any] | None,
                   ctx: AgentContext, batch: BatchState) -> ActionResult:
        if self.config.splay_ms:
            await asyncio.sleep(self.rng.uniform(0, self.config.splay_ms / 1000))
            await batch.in_turn()
        # A resumed action (idempotent, interrupted by a crash) repeats the interrupted attempt.
        attempt = int(resumed.get("attempts", 1)) if resumed else 1
        started_ms: int | None = resumed.get("started_ms") if resumed else None
        outcome: _Outcome | None = None
        while True:
            async with batch.slots:
                await batch.in_turn()  # waiting for a slot may have outlasted the turn
                now = ctx.now_ms()
                if expired(action.deadline, now):
                    if outcome is None:
                        return self._expired(ctx, action, resumed=resumed is not None)
                    outcome.error += " (deadline passed: not retried)"
                    break
                if started_ms is None:
                    started_ms = now
                self.ledger[action.id] = started_entry(attempts=attempt, started_ms=started_ms, now_ms=now)
                if outcome is None and needs_durable_start(idempotent=spec.idempotent,
                                                           durable_idempotent=batch.durable_idempotent):
                    await batch.durable()  # "started" is durable before the first side effect
                outcome = await self._parked(batch, action.id, self._attempt(action, spec, params, attempt))
            if outcome.status is ResultStatus.SUCCEEDED or not should_retry(
                    outcome.status, retryable=outcome.retryable, idempotent=spec.idempotent, attempt=attempt,
                    retry=self.config.retries):
                break
            delay_s = backoff_s(self.config.retries, attempt)
            log.info("action %s attempt %d %s (%s); retrying in %.1fs", action.id, attempt, outcome.status.value,
                     outcome.error, delay_s)
            await self._parked(batch, action.id, asyncio.sleep(delay_s))
            attempt += 1
        for s in outcome.sends if outcome.status is ResultStatus.SUCCEEDED else ():
            ctx.send(s.topic, s.key, s.value, schema=s.schema, headers=s.headers)
        return self._finish(ctx, action, outcome.status, attempts=attempt, started_ms=started_ms,
                            output=outcome.output, error=outcome.error,
                            dlq=outcome.status is not ResultStatus.SUCCEEDED)

    @staticmethod
    async def _parked(batch: BatchState, action_id: str, work: Awaitable[_T]) -> _T:
        """Await `work` (touching no table) parked; then wait until the tables may be written."""
        batch.parked.add(action_id)
        try:
            result = await work
        finally:
            batch.parked.discard(action_id)
        await batch.in_turn()
        return result

    async def _attempt(self, action: Action, spec: PluginSpec, params: dict[str, Any], attempt: int) -> _Outcome:
        timeout_s = self.config.timeout_s(spec.name)
        call = ActionCall(action=action, params=params, attempt=attempt, timeout_s=timeout_s, config=self.config,
                          settings=dict(self.config.plugin_settings.get(spec.name, {})), egress=self.egress)
        try:
            # In this task (asyncio.wait_for of Python 3.11 runs it in a task of its own: one more task
            # and loop pass per step).
            async with asyncio.timeout(timeout_s + min(_GRACE_S, timeout_s)):
                result = await spec.run(call)
        except ActionRejected as exc:
            return _Outcome(ResultStatus.REJECTED, error=str(exc), retryable=False)
        except ActionTimedOut as exc:
            return _Outcome(ResultStatus.TIMED_OUT, output=exc.output, error=str(exc))
        except ActionFailed as exc:
            return _Outcome(ResultStatus.FAILED, output=exc.output, error=str(exc), retryable=exc.retryable)
        except TimeoutError as exc:  # ours (asyncio.timeout) or the plugin's own I/O timeout
            return _Outcome(ResultStatus.TIMED_OUT, error=str(exc) or f"no result within {timeout_s:g}s")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the executor is stopping this attempt
            return _Outcome(ResultStatus.FAILED, error="the plugin was cancelled")
        except Exception as exc:
            log.warning("action %s: plugin %s raised %s: %s", action.id, spec.name, type(exc).__name__, exc)
            return _Outcome(ResultStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return _Outcome(ResultStatus.SUCCEEDED, output=_as_text(result), sends=call.sends)

    # -- results ----------------------------------------------------------------------------------
    def _result(self, action: Action, status: ResultStatus, *, result_id: str, now_ms: int, attempts: int,
                started_ms: int | None, output: str, error: str) -> ActionResult:
        limit = self.config.max_output_bytes
        return ActionResult(id=result_id, action_id=action.id, time=now_ms, status=status, rule=action.rule,
                            type=action.type, target=action.target, attempts=attempts, started=started_ms,
                            finished=now_ms if started_ms is not None else None, output=truncate(output, limit),
                            error=truncate(error, limit), trace_id=action.trace_id)

    def _finish(self, ctx: AgentContext, action: Action, status: ResultStatus, *, attempts: int = 0,
                started_ms: int | None = None, output: str = "", error: str = "", record: bool = True,
                dlq: bool = False) -> ActionResult:
        """Publish the action's one (non-DUPLICATE) result; mark it finished; dead-letter failures."""
        now = ctx.now_ms()
        if record:
            self.ledger[action.id] = finished_entry(status=status.value, attempts=attempts, started_ms=started_ms,
                                                    now_ms=now)
        # Deterministic, so a result published twice (only possible at-least-once) is recognisable.
        result = self._result(action, status, result_id=deterministic_id("action-result", action.id), now_ms=now,
                              attempts=attempts, started_ms=started_ms, output=output, error=error)
        ctx.send(RESULTS_TOPIC, action.target, result)
        if dlq:
            ctx.send(DLQ_TOPIC, action.target, action.to_record(), schema=Action.avro_name, headers={
                "vigil.agent": "executor", "vigil.status": status.value, "vigil.action_id": action.id,
                "vigil.attempts": str(attempts), "vigil.error": truncate(error, 4000)})
        level = logging.INFO if status is ResultStatus.SUCCEEDED else logging.WARNING
        log.log(level, "action %s (%s on %s, rule %s): %s after %d attempt(s)%s", action.id, action.type,
                action.target, action.rule, status.value, attempts, f": {error[:300]}" if error else "")
        return result

    def _duplicate(self, ctx: AgentContext, action: Action, entry: dict[str, Any] | None) -> ActionResult:
        if entry is None or entry.get("state") != "finished":
            why = "is running now (the same id twice in one batch)"
        else:
            why = f"already finished ({entry.get('status')}) at {entry.get('finished_ms')}"
        result = self._result(action, ResultStatus.DUPLICATE, result_id=new_id(), now_ms=ctx.now_ms(), attempts=0,
                              started_ms=None, output="", error=f"action id {action.id} {why}: not run again")
        ctx.send(RESULTS_TOPIC, action.target, result)
        log.info("action %s: DUPLICATE (%s)", action.id, why)
        return result

    def _expired(self, ctx: AgentContext, action: Action, *, resumed: bool) -> ActionResult:
        late_ms = ctx.now_ms() - (action.deadline or 0)
        what = ("not run again (an attempt interrupted by a restart may have taken effect)" if resumed
                else "not run")
        return self._finish(ctx, action, ResultStatus.EXPIRED, error=f"deadline passed {late_ms} ms ago: {what}")

    def _reject_malformed(self, value: Any, ctx: AgentContext, exc: Exception) -> None:
        fields = value if isinstance(value, dict) else {}

        def text(name: str) -> str:
            v = fields.get(name)
            return v if isinstance(v, str) else ""

        reason = f"not a valid vigil.Action: {exc}"
        result = ActionResult(id=new_id(), action_id=text("id"), time=ctx.now_ms(), status=ResultStatus.REJECTED,
                              rule=text("rule"), type=text("type"), target=text("target"), attempts=0,
                              error=truncate(reason, self.config.max_output_bytes))
        ctx.send(RESULTS_TOPIC, text("target") or None, result)
        raw = json.dumps(value, default=repr).encode()  # it may not fit the Action schema: keep it as JSON
        ctx.send(DLQ_TOPIC, text("target") or None, raw, headers={"vigil.agent": "executor",
                                                                    "vigil.status": "REJECTED",
                                                                    "vigil.error": truncate(reason, 4000)})
        log.warning("rejected a record on actions: %s", reason)
