"""The built-in stages a `vigil worker` runs, built from settings: the pipeline (status, windows,
absence, archive index), the rules stage, the members stage, the routes stage (copies of events
to other topics: app.routing) and the metric sinks (app.sinks). Nothing here runs at import: each
call builds new stages, so several (with different settings) can live in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from app.config import Settings
from app.runtime.stage import Stage

__all__ = ["BUILTIN_STAGES", "build_stages"]


def _pipeline(settings: Settings) -> Stage:
    from app.dead_letter_limit import dead_letter_limits
    from app.pipeline.agents import Pipeline
    from app.pipeline.config import PipelineConfig

    return Pipeline(PipelineConfig.from_settings(settings), dead_letter_limits=dead_letter_limits(settings)).stage()


def _rules(settings: Settings) -> Stage:
    from app.rules.stage import RulesStage, StageConfig

    return RulesStage(StageConfig.from_settings(settings)).stage()


def _routes(settings: Settings) -> Stage:
    from app.routing.stage import RoutesConfig, RoutesStage

    return RoutesStage(RoutesConfig.from_settings(settings)).stage()


def _members(settings: Settings) -> Stage:
    from app.members.agent import build_members_stage

    return build_members_stage()


def _sinks(settings: Settings) -> Stage:
    from app.sinks.config import SinksConfig
    from app.sinks.stage import SinksStage

    return SinksStage(SinksConfig.from_settings(settings), state_dir=settings.state_dir).stage()


#: name -> builder; `vigil worker --stage NAME` picks some (default: all, in this order)
BUILTIN_STAGES: Final[dict[str, Callable[[Settings], Stage]]] = {
    "pipeline": _pipeline, "rules": _rules, "members": _members, "routes": _routes,
    "sinks": _sinks}


def build_stages(settings: Settings, names: Iterable[str] | None = None) -> list[Stage]:
    """New built-in stages from `settings` (all of them unless `names` picks some)."""
    chosen = list(BUILTIN_STAGES) if names is None else list(names)
    unknown = [n for n in chosen if n not in BUILTIN_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(BUILTIN_STAGES)}")
    return [BUILTIN_STAGES[name](settings) for name in chosen]
