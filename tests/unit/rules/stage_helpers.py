"""Drive the rules stage's agents in the runtime's AgentHarness (no Kafka), including the hop
through the repartition topic."""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path
from typing import Any

from app.model.events import Action
from app.rules.inhibit import DependencyView
from app.rules.silences import SilenceSet
from app.rules.stage import ACTIONS_TOPIC, REPARTITION_TOPIC, RulesStage, StageConfig
from app.rules.storms import DEFAULT_MAX_CHAIN_DEPTH
from app.runtime.agent import AgentRegistry
from app.runtime.testing import AgentHarness

KEY = b"0123456789abcdef-test-signing-key"


class StageRun:
    """A RulesStage over a rules directory, run by an AgentHarness; records go in through `events`
    or `alerts`, and what the routing agents forward is fed on to `evaluate` like the worker would."""

    def __init__(self, rules_dir: Path, *, partitions: int = 3, signing_key: bytes | None = KEY,
                 wall_clock_ms: int = 0, silences: SilenceSet | None = None,
                 max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH, dependency_view: DependencyView | None = None,
                 dependency_recheck_ms: int = 5_000) -> None:
        self.config = StageConfig(rules_dir=rules_dir, signing_key=signing_key, max_chain_depth=max_chain_depth,
                                  dependency_recheck_ms=dependency_recheck_ms)
        self.silences = silences or SilenceSet()
        self.dependency_view = dependency_view or DependencyView()
        self.stage = RulesStage(self.config, registry=AgentRegistry(), silences=self.silences,
                                dependency_view=self.dependency_view)
        self.harness = AgentHarness(self.stage.agents, partitions=partitions, wall_clock_ms=wall_clock_ms)
        self._forwarded = 0

    def restart(self, *, new_process: bool = False) -> None:
        """Restart the worker on the same state; `new_process`: also a fresh stage (loads the rule
        files anew, remembers nothing in memory), as after a process restart."""
        if new_process:
            self.stage = RulesStage(self.config, registry=AgentRegistry(), silences=self.silences,
                                    dependency_view=self.dependency_view)
            self.harness.agents = self.stage.agents
        self.harness.restart()

    def feed(self, records: list[dict[str, Any]], *, topic: str = "events", type_name: str = "vigil.Event") -> None:
        """Feed records one by one, each followed by its hop through the repartition topic."""
        for record in records:
            self.harness.feed(topic, record, type_name=type_name)
            self.pump(type_name)

    def pump(self, type_name: str = "vigil.Event") -> None:
        """Deliver the records forwarded to the repartition topic since the last pump."""
        forwarded = self.harness.outputs(REPARTITION_TOPIC)[self._forwarded:]
        self._forwarded += len(forwarded)
        for out in forwarded:
            # The harness's raw value is repr() of the fed dict: the worker would forward Avro bytes.
            assert isinstance(out.value, bytes)
            self.harness.feed(REPARTITION_TOPIC, ast.literal_eval(out.value.decode()), key=str(out.key),
                              type_name=type_name)

    def advance(self, ms: int) -> int:
        """Move the wall clock; fires due timers (absence, reload checks)."""
        return self.harness.advance_wall_clock(ms)

    def actions(self) -> list[Action]:
        return [o.value for o in self.harness.outputs(ACTIONS_TOPIC)]

    def outputs(self, topic: str) -> list[Any]:
        return self.harness.outputs(topic)


def write_rules(directory: Path, yaml_text: str, name: str = "rules.yaml") -> Path:
    """Write a rule file (dedented) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    before = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(textwrap.dedent(yaml_text))
    if before is not None:  # a rewrite within the file system's mtime resolution must still look changed
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))
    return path
