"""Where conditions read from, and judging a list of them.

A `ConditionSource` answers three questions: the status records of the identities a selector
picks, every known silence, and one identity's recent metric windows. `evaluate` asks it only
what the conditions need (windows only for metric and register-rule conditions, for at most
MAX_SERIES identities each) and judges them (app.orchestration.judges).

Two sources: the UI server's in-memory status index (app.web.gates: fast at 50,000 identities)
and `WorkersSource`, the workers' query routes over HTTP (`vigil gate check` without the UI, and
the orchestrator's waits).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from app.orchestration.conditions import (
    MAX_SERIES,
    AlertsCondition,
    Condition,
    ConditionResult,
    MetricCondition,
    RuleCondition,
    Selector,
    Series,
    StatusCondition,
)
from app.orchestration.gates import Gate, GateDecision, decide
from app.orchestration.judges import StatusSummary, judge, summarize
from app.rules.silences import Silence, SilenceError
from app.web.workers import WorkersClient, WorkersError

__all__ = ["ConditionSource", "SourceError", "StatusSummaries", "WorkersSource", "evaluate", "judge_gate",
           "silence_from_json", "windows_needed"]


class SourceError(Exception):
    """The source cannot answer now (the message says what did not answer)."""


class ConditionSource(Protocol):
    """What conditions read (see the module docstring)."""

    async def statuses(self, selector: Selector) -> Sequence[Mapping[str, Any]]: ...

    async def silences(self) -> Sequence[Silence]: ...

    async def windows(self, subject: str, name: str, metric: str, last: int) -> Series: ...


@runtime_checkable
class StatusSummaries(Protocol):
    """A source that answers status and alerts conditions from counts it keeps (app.web.gates: the
    status index), not from every selected row."""

    async def status_summary(self, selector: Selector, states: frozenset[str], *,
                             inside: bool) -> StatusSummary: ...


def windows_needed(span_ms: int, stable_for_ms: int | None, smallest_size_ms: int = 10_000) -> int:
    """How many of the latest windows of each size cover the span and the time it must have held."""
    return min(1000, math.ceil((span_ms + (stable_for_ms or 0)) / smallest_size_ms) + 2)


async def _series(source: ConditionSource, rows: Sequence[Mapping[str, Any]], metric: str,
                  last: int) -> dict[tuple[str, str], Series]:
    keys = sorted({(str(r["subject"]), str(r["name"])) for r in rows})
    answers = await asyncio.gather(*(source.windows(subject, name, metric, last) for subject, name in keys))
    return dict(zip(keys, answers, strict=True))


async def _judge_one(c: Condition, source: ConditionSource, now_ms: int, stable_for_ms: int | None,
                     silences: Sequence[Silence] | None) -> ConditionResult:
    if c.kind == "silences":
        return judge(c, silences=silences or (), now_ms=now_ms, stable_for_ms=stable_for_ms)
    if isinstance(c, StatusCondition | AlertsCondition):
        # status: the ones not in its states are reported; alerts: the open ones (in its states)
        inside = isinstance(c, AlertsCondition)
        if isinstance(source, StatusSummaries):
            summary = await source.status_summary(c.selector, c.states, inside=inside)
        else:
            summary = summarize(await source.statuses(c.selector), c.states, inside=inside)
        return judge(c, summary=summary, silences=silences or (), now_ms=now_ms, stable_for_ms=stable_for_ms)
    if isinstance(c, RuleCondition):
        rows = [r for r in await source.statuses(c.selector) if c.predicate(r, "vigil.Status")]
    else:
        rows = list(await source.statuses(c.selector))  # type: ignore[attr-defined]
    series: dict[tuple[str, str], Series] = {}
    span = None
    metric = None
    if isinstance(c, MetricCondition):
        span, metric = c.over_ms, c.metric
    elif isinstance(c, RuleCondition) and c.register is not None:
        register = c.register
        span = register.period_ms
        metric = register.metric[len("metrics."):] if register.metric.startswith("metrics.") else register.metric
    if span is not None and metric is not None:
        if len(rows) > MAX_SERIES:
            return ConditionResult(c.kind, c.label, False, None,
                                   f"{len(rows)} identities match; metric windows are judged for at most "
                                   f"{MAX_SERIES}: narrow the selector")
        series = await _series(source, rows, metric, windows_needed(span, stable_for_ms))
    return judge(c, rows=rows, silences=silences or (), series=series, now_ms=now_ms, stable_for_ms=stable_for_ms)


async def evaluate(conditions: Sequence[Condition], source: ConditionSource, now_ms: int, *,
                   stable_for: Mapping[int, int | None] | None = None) -> list[ConditionResult]:
    """Judge every condition (in order). `stable_for`: index -> the stable_for to apply instead of
    the condition's own (a gate's default). Raises SourceError when the source cannot answer."""
    needs_silences = any(c.kind in ("silences", "alerts") for c in conditions)
    silences = list(await source.silences()) if needs_silences else []
    results = []
    for i, c in enumerate(conditions):
        stable = stable_for.get(i, c.stable_for_ms) if stable_for is not None else c.stable_for_ms
        results.append(await _judge_one(c, source, now_ms, stable, silences))
    return results


def silence_from_json(data: Mapping[str, Any]) -> Silence | None:
    """A Silence from its JSON form (the workers' /rules answer); None when it does not parse."""
    try:
        return Silence(id=str(data["id"]), match=dict(data.get("match") or {}), rule=data.get("rule"),
                       until_ms=int(data["until_ms"]), reason=str(data.get("reason") or ""),
                       created_ms=int(data.get("created_ms") or 0))
    except (KeyError, TypeError, ValueError, SilenceError):
        return None


class WorkersSource:
    """The workers' query routes: /status, /windows and the silences /rules lists."""

    def __init__(self, client: WorkersClient) -> None:
        self.client = client

    async def statuses(self, selector: Selector) -> Sequence[Mapping[str, Any]]:
        try:
            found, _missing = await self.client.statuses(subject=selector.subject, name=selector.name)
        except WorkersError as exc:
            raise SourceError(str(exc)) from exc
        return [r for r in found if selector.matches(r)] if selector.tags else found

    async def silences(self) -> Sequence[Silence]:
        try:
            answers = await self.client.get("/rules", {})
        except WorkersError as exc:
            raise SourceError(str(exc)) from exc
        found: dict[str, Silence] = {}
        for body in answers.ok():
            for data in (body.get("silences") or {}).get("active", []):
                silence = silence_from_json(data)
                if silence is not None:
                    found[silence.id] = silence
        return list(found.values())

    async def windows(self, subject: str, name: str, metric: str, last: int) -> Series:
        try:
            found, _missing = await self.client.windows(subject=subject, name=name, metric=metric, size_ms=None,
                                                        last=last)
        except WorkersError as exc:
            raise SourceError(str(exc)) from exc
        return found


async def judge_gate(gate: Gate, source: ConditionSource, now_ms: int) -> GateDecision:
    """The gate's decision now (a condition the source cannot judge closes it, with the reason)."""
    stable_for = {i: gate.stable_for(c) for i, c in enumerate(gate.conditions)}
    try:
        results = await evaluate(gate.conditions, source, now_ms, stable_for=stable_for)
    except SourceError as exc:
        return decide(gate, [], now_ms, problems=[f"cannot judge the conditions now: {exc}"])
    return decide(gate, results, now_ms)
