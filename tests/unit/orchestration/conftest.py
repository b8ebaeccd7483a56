"""An executor and its orchestrator in the runtime harness: test plugins, a static members view,
conditions read from in-memory statuses, and `pump()` to deliver what one agent sends to the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.executor.agent import build_executor_agent
from app.executor.config import ExecutorConfig
from app.executor.plugin import ActionCall, ActionFailed, action, default_plugins
from app.executor.plugins import load_builtin_plugins
from app.model.events import Action
from app.orchestration.conditions import Selector
from app.orchestration.members import MemberInfo, StaticMembers
from app.orchestration.records import command, sign_record
from app.orchestration.service import build_orchestration
from app.rules.silences import Silence
from app.runtime.testing import partition_for
from tests.unit.executor.conftest import ExecutorHarness, SimulatedKill

KEY = b"orchestration-test-key-0123456789"


@dataclass
class Calls:
    """What the test plugins did, and what they should do."""

    done: list[tuple[str, str]] = field(default_factory=list)  # (action id, target)
    fail_targets: set[str] = field(default_factory=set)
    kill_once: set[str] = field(default_factory=set)  # step names whose first attempt is killed


@dataclass
class FakeSource:
    """Conditions read from these statuses (and no silences, no windows)."""

    statuses_: list[dict[str, Any]] = field(default_factory=list)

    async def statuses(self, selector: Selector) -> list[dict[str, Any]]:
        return [s for s in self.statuses_ if selector.matches(s)]

    async def silences(self) -> list[Silence]:
        return []

    async def windows(self, subject: str, name: str, metric: str, last: int) -> list[dict[str, Any]]:
        return []

    def set(self, subject: str, name: str, state: str, since: int = 0) -> None:
        self.statuses_ = [s for s in self.statuses_ if (s["subject"], s["name"]) != (subject, name)]
        self.statuses_.append({"subject": subject, "name": name, "state": state, "since": since, "tags": {}})


class OrchestrationHarness(ExecutorHarness):
    """The executor and orchestrator agents; `pump()` feeds `runs` commands the agents sent."""

    partitions_runs = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._fed = 0
        super().__init__(*args, **kwargs)

    def pump(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            pending = [o for o in self.outputs("runs")][self._fed:]
            if not pending:
                return
            for out in pending:
                self.feed("runs", out.value, key=out.key, partition=partition_for(out.key, self.partitions),
                          type_name=None)
                # Counted once processed: a record whose call was killed is delivered again, as Kafka
                # does (its offset was not committed).
                self._fed += 1

    def send(self, kind: str, run_id: str, *, by: str = "alice", **fields: Any) -> None:
        record = sign_record(command(kind, run_id, by=by, **fields), KEY)
        self.feed("runs", record, key=run_id, partition=0, type_name=None)

    def start(self, action_type: str, params: dict[str, Any], *, action_id: str = "start-1",
              target: str = "web1") -> str:
        from app.model.signing import sign_action

        record = Action(id=action_id, time=1_000, rule="r1", type=action_type, target=target,
                        params=json.dumps(params), event_id="ev-1", trace_id="trace-1").to_record()
        record["signature"] = sign_action(record, KEY)
        self.run(record)
        self.pump()
        return action_id

    def state(self, run_id: str) -> dict[str, Any]:
        """The latest snapshot published to run-states."""
        found = [o.value for o in self.outputs("run-states") if o.key == run_id]
        assert found, f"no snapshot of {run_id}"
        return found[-1]

    def step_results(self) -> list[Any]:
        return [r for r in self.results() if r.rule == "r1" and r.type not in ("runbook", "roll")]

    def tick(self, ms: int = 1_000, times: int = 1) -> None:
        for _ in range(times):
            self.advance_wall_clock(ms)
            self.pump()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def members() -> StaticMembers:
    return StaticMembers([MemberInfo(f"db{i}", True, {"role": "cassandra"}) for i in range(1, 11)])


@pytest.fixture
def orchestration(tmp_path: Path, calls: Calls, source: FakeSource, members: StaticMembers,
                  settings_factory: Callable[..., Any]) -> Callable[..., OrchestrationHarness]:
    """Factory: OrchestrationHarness(rules text) with the test plugins `step` and `safe-step`."""
    load_builtin_plugins()

    def make(rules: str, **config: Any) -> OrchestrationHarness:
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "runbooks.yaml").write_text(textwrap.dedent(rules))
        registry = default_plugins.copy()

        async def step(call: ActionCall) -> str:
            name = call.action.run.partition("/")[2]
            if name in calls.kill_once:
                calls.kill_once.discard(name)
                raise SimulatedKill()
            await asyncio.sleep(float(call.params.get("sleep", 0)))
            calls.done.append((call.action.id, call.action.target))
            if call.action.target in calls.fail_targets or call.params.get("fail"):
                raise ActionFailed(f"{call.action.target} failed", output="broken", retryable=False)
            return f"{name} on {call.action.target}: {call.params.get('say', 'ok')}"

        action("step", registry=registry)(step)
        action("safe-step", idempotent=True, registry=registry)(step)
        config.setdefault("retries", {"max_attempts": 1, "backoff": "1ms"})
        config.setdefault("orchestration", {"slice": "2s", "workers": ["http://127.0.0.1:1"],
                                            "rules_dir": str(rules_dir)})
        cfg = ExecutorConfig.model_validate(config)

        @contextlib.asynccontextmanager
        async def open_source() -> AsyncIterator[FakeSource]:
            yield source

        built = build_orchestration(settings_factory(rules_dir), cfg, registry, signing_key=KEY, members=members,
                                    source=open_source)
        executor = build_executor_agent(cfg, plugins=registry, signing_key=KEY)
        return OrchestrationHarness([executor, *built.agents], partitions=1, wall_clock_ms=10_000)

    return make


@pytest.fixture
def settings_factory() -> Callable[..., Any]:
    from app.config import load_settings

    def make(rules_dir: Path) -> Any:
        return load_settings(rules_dir=rules_dir)

    return make
