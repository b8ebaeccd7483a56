"""The executor as a stream agent on `actions`, written on the public runtime API.

    agent = build_executor_agent(load_executor_config("executor.yaml"), signing_key=load_signing_key())
    Worker(settings, [agent], WorkerOptions(app_id="vigil-executor", guarantee=Guarantee.EXACTLY_ONCE)).run()

A batch agent: each call gets the records the worker consumed from one partition of `actions`.
Actions are keyed by target, so all actions of a target are in one partition, in order. Within a
call the actions of different targets run concurrently on asyncio (at most `concurrency` at once,
each after a random splay); a target's actions run `per_target_concurrency` at a time (1: one
after the other, in offset order). The next batch starts when every action of this one ended.

Limits (of running on a partition-at-a-time runtime):
- Partitions are processed one after another, so concurrency spans the targets of one partition's
  batch, not the whole topic. Many targets spread over few partitions are fine.
- A batch blocks polling until its last action ends. `batch_size` × attempts × (timeout + backoff)
  for one target must stay below the consumer's max.poll.interval.ms (5 minutes), or the group
  rebalances mid-batch (actions then end as interrupted/duplicate, never run twice).
- Result guarantee: with `--guarantee exactly_once` (the executor's default) every action id has
  exactly one non-DUPLICATE result, because "finished" and the result commit in one transaction.
  At-least-once keeps "runs at most once", but a crash inside a commit can publish a result twice
  (same result id) or drop one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.executor.config import ExecutorConfig
from app.executor.egress import Resolver
from app.executor.plugin import PluginRegistry, default_plugins
from app.executor.runner import DLQ_TOPIC, ActionRunner, BatchState, GroupCheckpoint
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.tables import Table

__all__ = ["ACTIONS_TOPIC", "LEDGER_SWEEP_TIMER", "build_executor_agent", "run_batch"]

log = logging.getLogger(__name__)

ACTIONS_TOPIC = "actions"
#: Timer key of the periodic ledger clean-up (one per partition).
LEDGER_SWEEP_TIMER = "__ledger-sweep"
_SWEEP_EVERY_MS = 3_600_000


def _target_of(value: Any) -> str:
    target = value.get("target") if isinstance(value, dict) else None
    return target if isinstance(target, str) else ""


def _is_run_step(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("run"))


async def _run_target(runner: ActionRunner, values: list[Any], ctx: AgentContext, batch: BatchState,
                      limit: int) -> None:
    """One target's actions, in order, at most `limit` at a time."""
    if limit == 1:
        for value in values:
            await runner.handle(value, ctx, batch)
        return
    slots = asyncio.Semaphore(limit)
    tasks: list[asyncio.Task[Any]] = []
    try:
        for value in values:
            await slots.acquire()  # starts keep offset order; ends may not
            task = asyncio.ensure_future(runner.handle(value, ctx, batch))
            task.add_done_callback(lambda _t: slots.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def run_batch(runner: ActionRunner, values: list[Any], ctx: AgentContext) -> None:
    """Run one partition's batch of actions (see the module docstring for the scheduling)."""
    config = runner.config
    batch = BatchState(slots=asyncio.Semaphore(config.concurrency), durable=GroupCheckpoint(ctx.checkpoint))
    by_target: dict[str, list[Any]] = {}
    for value in values:
        if _is_run_step(value):
            continue  # a step of an orchestration run: on `actions` for the record, run by its orchestrator
        by_target.setdefault(_target_of(value), []).append(value)
    tasks = [asyncio.ensure_future(_run_target(runner, group, ctx, batch, config.per_target_concurrency))
             for group in by_target.values()]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # Only CheckpointFailed (or a cancellation) gets here: stop everything still running.
        for task in tasks:
            task.cancel()
        raise


def build_executor_agent(config: ExecutorConfig, *, plugins: PluginRegistry | None = None,
                         signing_key: bytes | None = None, registry: AgentRegistry | None = None,
                         name: str = "executor", topic: str = ACTIONS_TOPIC,
                         resolver: Resolver | None = None) -> Agent:
    """The executor agent with its ledger table, registered in `registry` (a private one by default,
    so `vigil worker` never picks it up). `resolver` resolves the hosts plugins connect to (default:
    the system resolver; tests give their own)."""
    ledger = Table("ledger", default=None, help="action id -> started/finished, status, attempts, times")
    runner = ActionRunner(config, plugins or default_plugins, ledger, signing_key, resolver=resolver)
    sweep_every_ms = min(_SWEEP_EVERY_MS, config.ledger_retention_ms)

    async def execute(values: list[Any], ctx: AgentContext) -> None:
        """Run actions from `actions`; publish one ActionResult each to `action-results`."""
        await run_batch(runner, values, ctx)
        if ctx.timers.get(LEDGER_SWEEP_TIMER) is None:
            ctx.timers.schedule(LEDGER_SWEEP_TIMER, ctx.now_ms() + sweep_every_ms, kind="wall")

    executor = agent(topic, name=name, tables=[ledger], batch=True, decode="avro", dlq_topic=DLQ_TOPIC,
                     registry=registry or AgentRegistry())(execute)

    @executor.on_timer
    def sweep_ledger(key: str, payload: Any, ctx: AgentContext) -> None:
        """Forget action ids last touched more than `ledger_retention` ago (one partition)."""
        now = ctx.now_ms()
        cutoff = now - config.ledger_retention_ms
        old = [action_id for action_id, entry in ledger.items() if int(entry.get("updated_ms", 0)) < cutoff]
        for action_id in old:
            del ledger[action_id]
        if old:
            log.info("ledger partition %d: forgot %d action id(s) older than %d ms", ctx.partition, len(old),
                     config.ledger_retention_ms)
        ctx.timers.schedule(LEDGER_SWEEP_TIMER, now + sweep_every_ms, kind="wall")

    executor.on_close(runner.aclose)  # its kept HTTP connections, before the engine's loop closes
    return executor
