"""Factories for executor tests: actions, configs, test plugins, and a harness that can crash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig
from app.executor.egress import Resolver
from app.executor.plugin import ActionCall, ActionFailed, PluginRegistry, action, default_plugins
from app.executor.plugins import load_builtin_plugins
from app.model.events import Action, ActionResult, ResultStatus
from app.model.signing import sign_action
from app.runtime.testing import AgentHarness
from tests.unit.executor.loopback import LOOPBACK_ONLY, table_resolver

KEY = b"test-signing-key-0123456789"

class SimulatedKill(BaseException):
    """Raised by a plugin to stand for SIGKILL mid-action: nothing after it runs or commits."""


def make_action(action_id: str = "a1", *, type: str = "print", target: str = "web1", params: Any = None,
                deadline: int | None = None, key: bytes | None = None, **fields: Any) -> dict[str, Any]:
    """A vigil.Action as the executor consumes it (decoded Avro dict), signed when `key` is given."""
    record = Action(id=action_id, time=1_000, rule="r1", type=type, target=target,
                    params=json.dumps(params or {}), event_id="ev-1", trace_id="trace-1", deadline=deadline,
                    **fields).to_record()
    if key is not None:
        record["signature"] = sign_action(record, key)
    return record


class ExecutorHarness(AgentHarness):
    """AgentHarness whose checkpoints publish like the worker's (outputs so far become visible),
    and which can crash: state and outputs after the last checkpoint are lost, as with SIGKILL."""

    def _checkpoint(self) -> None:
        super()._checkpoint()
        self._drain()

    def run(self, *actions: dict[str, Any]) -> None:
        """Deliver actions as one consumed batch of partition 0."""
        self.feed_many("actions", list(actions), partition=0, type_name="vigil.Action")

    def run_until_killed(self, *actions: dict[str, Any]) -> None:
        """Deliver a batch during which a plugin raises SimulatedKill; then 'restart' the process."""
        with pytest.raises(SimulatedKill):
            self.run(*actions)
        self.engine.outputs.clear()  # produced after the last commit: never reached Kafka
        self.engine.close()  # closes stores without committing their pending writes
        self._start()

    def results(self) -> list[ActionResult]:
        return [o.value for o in self.outputs("action-results")]

    def statuses(self) -> dict[str, list[str]]:
        """Result statuses per action id, in publication order."""
        out: dict[str, list[str]] = {}
        for r in self.results():
            out.setdefault(r.action_id, []).append(r.status)
        return out

    def ledger(self, action_id: str) -> Any:
        return self.table("ledger").lookup(action_id)


@dataclass
class Recorder:
    """Test plugins and what they saw."""

    calls: list[str] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    max_active: int = 0
    max_active_per_target: dict[str, int] = field(default_factory=dict)
    fail_times: dict[str, int] = field(default_factory=dict)
    kill_once: set[str] = field(default_factory=set)

    def enter(self, call: ActionCall) -> None:
        self.calls.append(call.action.id)
        target = call.action.target
        self.active[target] = self.active.get(target, 0) + 1
        self.max_active = max(self.max_active, sum(self.active.values()))
        self.max_active_per_target[target] = max(self.max_active_per_target.get(target, 0), self.active[target])

    def leave(self, call: ActionCall) -> None:
        self.active[call.action.target] -= 1


def _test_plugins(rec: Recorder) -> PluginRegistry:
    reg = default_plugins.copy()

    async def work(call: ActionCall) -> str:
        rec.enter(call)
        try:
            if call.action.id in rec.kill_once:
                rec.kill_once.discard(call.action.id)
                raise SimulatedKill()
            await asyncio.sleep(float(call.params.get("sleep", 0)))
            left = rec.fail_times.get(call.action.id, 0)
            if left:
                rec.fail_times[call.action.id] = left - 1
                raise ActionFailed("flaky", output="partial", retryable=bool(call.params.get("retryable", True)))
            for topic in call.params.get("send", []):
                call.send(topic, call.action.target, {"from": call.action.id})
            return f"did {call.action.id}"
        finally:
            rec.leave(call)

    action("work", registry=reg)(work)
    action("safe-work", idempotent=True, registry=reg)(work)

    def blocking(call: ActionCall) -> str:
        rec.calls.append(call.action.id)
        return "sync"

    action("blocking", registry=reg)(blocking)
    return reg


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def executor(recorder: Recorder) -> Callable[..., ExecutorHarness]:
    """Factory: an ExecutorHarness running the executor with built-ins + test plugins."""
    load_builtin_plugins()

    def make(*, key: bytes | None = None, wall_clock_ms: int = 5_000, resolver: Resolver | None = None,
             **config: Any) -> ExecutorHarness:
        config.setdefault("retries", {"backoff": "1ms", "max_backoff": "5ms"})
        config.setdefault("outbound", LOOPBACK_ONLY)
        cfg = ExecutorConfig.model_validate(config)
        agent = build_executor_agent(cfg, plugins=_test_plugins(recorder), signing_key=key,
                                     resolver=resolver or table_resolver({"localhost": ["127.0.0.1"]}))
        return ExecutorHarness([agent], partitions=1, wall_clock_ms=wall_clock_ms)

    return make


def only(results: list[ActionResult], status: ResultStatus | str) -> list[ActionResult]:
    value = status.value if isinstance(status, ResultStatus) else status
    return [r for r in results if r.status == value]
