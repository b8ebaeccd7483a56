"""Building the orchestration parts `vigil executor` runs, from settings and executor.yaml: the
`runbook`/`roll` plugins, the members view, and the orchestrator agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.api_token import load_api_token
from app.config import Settings
from app.executor.config import ExecutorConfig
from app.executor.egress import Resolver
from app.executor.plugin import PluginRegistry
from app.orchestration.definitions import DefinitionsLoader
from app.orchestration.members import MembersView, TopicMembers
from app.orchestration.orchestrator import Orchestrator, SourceFactory, workers_source
from app.orchestration.start import add_start_plugins
from app.runtime.agent import Agent

__all__ = ["Orchestration", "build_orchestration"]


@dataclass
class Orchestration:
    """What the executor runs for orchestration; `close()` stops the members view."""

    definitions: DefinitionsLoader
    orchestrator: Orchestrator | None
    members: MembersView | None = None
    _closers: list[TopicMembers] = field(default_factory=list)

    @property
    def agents(self) -> list[Agent]:
        return [self.orchestrator.agent] if self.orchestrator is not None else []

    def close(self) -> None:
        for closer in self._closers:
            closer.stop()


def build_orchestration(settings: Settings, config: ExecutorConfig, plugins: PluginRegistry, *,
                        signing_key: bytes | None, members: MembersView | None = None,
                        source: SourceFactory | None = None, resolver: Resolver | None = None) -> Orchestration:
    """Register the start plugins in `plugins` and, when orchestration is enabled, build the
    orchestrator (members from the `members` topic unless given; waits read the workers)."""
    orchestration = config.orchestration
    definitions = DefinitionsLoader(Path(orchestration.rules_dir or settings.rules_dir))
    add_start_plugins(plugins, definitions, signing_key)
    if not orchestration.enabled:
        return Orchestration(definitions, None)
    closers: list[TopicMembers] = []
    if members is None:
        topic_members = TopicMembers(settings).start()
        closers.append(topic_members)
        members = topic_members
    orchestrator = Orchestrator(orchestration, config, plugins=plugins, definitions=definitions, members=members,
                                source=source or workers_source(orchestration.workers, load_api_token()),
                                signing_key=signing_key, resolver=resolver)
    return Orchestration(definitions, orchestrator, members, closers)
