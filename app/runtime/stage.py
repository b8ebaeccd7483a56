"""What a stage hands the worker that runs it: its agents, the HTTP routes that query its tables,
the Prometheus registries of its own counters, and how to close it.

Built-in stages (the pipeline, the rules stage, members) and the executor are objects built from
settings that return a Stage; plugin modules' agents, routes and metrics (declared with @agent,
@route and serve_metrics into the plugin registry) become one too (`plugin_stage`). A worker runs
the combination of several (`combine`), and a backtest or a test can build its own, several in one
process, without anything shared at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.runtime.agent import Agent, AgentRegistry
from app.runtime.http import Route

__all__ = ["Stage", "StageParts", "combine", "plugin_stage"]


def _nothing() -> None:
    return None


@dataclass
class Stage:
    """One stage's parts, as a worker takes them."""

    name: str
    agents: list[Agent]
    routes: dict[str, Route] = field(default_factory=dict)
    #: prometheus_client CollectorRegistry objects served at /metrics
    collectors: list[Any] = field(default_factory=list)
    close: Callable[[], None] = _nothing


@dataclass
class StageParts:
    """Several stages' parts together (what Worker(...) takes), and how to close them all."""

    agents: list[Agent]
    routes: dict[str, Route]
    collectors: list[Any]
    stages: list[Stage]

    def close(self) -> None:
        """Close every stage (e.g. stop a stage's background readers), even if one fails."""
        errors = []
        for stage in self.stages:
            try:
                stage.close()
            except Exception as exc:  # close the others; report the first
                errors.append(exc)
        if errors:
            raise errors[0]


def plugin_stage(registry: AgentRegistry, name: str = "plugins") -> Stage:
    """The agents, routes and metric registries that plugin modules declared in `registry`."""
    return Stage(name, registry.agents(), dict(registry.routes), list(registry.collectors))


def combine(stages: Iterable[Stage]) -> StageParts:
    """One worker's parts from several stages; two stages serving the same route is an error."""
    stages = list(stages)
    agents: list[Agent] = []
    routes: dict[str, Route] = {}
    owner: dict[str, str] = {}
    collectors: list[Any] = []
    for stage in stages:
        agents += stage.agents
        for path, handler in stage.routes.items():
            if path in owner:
                raise ValueError(f"stages {owner[path]} and {stage.name} both serve {path}")
            owner[path] = stage.name
            routes[path] = handler
        collectors += [c for c in stage.collectors if c not in collectors]
    return StageParts(agents, routes, collectors, stages)
