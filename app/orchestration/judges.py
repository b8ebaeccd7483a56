"""Judging conditions (app.orchestration.conditions) on data already fetched: pure functions, one
per kind, and `judge` for any. See the conditions module for what each kind means; `stable_for` is
judged from the data's own history (last transitions, ended silences, older metric windows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from app.orchestration.conditions import (
    AlertsCondition,
    Condition,
    ConditionResult,
    MetricCondition,
    RuleCondition,
    Series,
    SilencesCondition,
    StatusCondition,
    describe_time,
)
from app.rules.fields import EVENT_TYPE
from app.rules.match import EventValueTest, ValueTest
from app.rules.silences import ActionFacts, Silence
from app.rules.triggers import RegisterTrigger, StatusTrigger

__all__ = ["StatusSummary", "aggregate_windows", "judge", "judge_alerts", "judge_metric", "judge_rule",
           "judge_silences", "judge_status", "summarize"]

_SHOWN = 5


def _identity(record: Mapping[str, Any]) -> str:
    return f"{record.get('subject')}/{record.get('name')}"


def _latest_since(rows: Iterable[Mapping[str, Any]]) -> int | None:
    times = [int(r.get("since") or 0) for r in rows]
    return max(times) if times else None


@dataclass(frozen=True)
class StatusSummary:
    """What a status or alerts condition needs of the identities its selector picks: how many, the
    latest `since` among them, and those whose state is in (`inside`) or not in the condition's
    states -- so a source that keeps these counts (the UI's status index) need not hand over every row."""

    count: int
    latest_since: int | None
    picked: Sequence[Mapping[str, Any]]


def summarize(rows: Sequence[Mapping[str, Any]], states: frozenset[str], *, inside: bool) -> StatusSummary:
    """The summary of `rows` (the status records a selector picks): `picked` are those whose state is
    (inside=True) or is not (inside=False) one of `states`."""
    picked = [r for r in rows if (str(r.get("state")) in states) == inside]
    return StatusSummary(len(rows), _latest_since(rows), picked)


def _stable(result: ConditionResult, stable_for_ms: int | None, now_ms: int) -> ConditionResult:
    if not result.holds or stable_for_ms is None or result.since_ms is None:
        return result
    held_ms = now_ms - result.since_ms
    if held_ms >= stable_for_ms:
        return result
    return ConditionResult(result.kind, result.label, True, result.since_ms,
                           f"{result.reason}; but only since {describe_time(result.since_ms)} "
                           f"({held_ms // 1000}s of the {stable_for_ms // 1000}s it must hold)", False,
                           result.details)


def judge_status(c: StatusCondition, summary: StatusSummary, now_ms: int) -> ConditionResult:
    """`summary`: of the identities `c.selector` selects, picking those not in `c.states`."""
    states = "|".join(sorted(c.states))
    bad, since, count = summary.picked, summary.latest_since, summary.count
    if count < c.at_least:
        return ConditionResult(c.kind, c.label, False, since, f"{count} identities match "
                               f"{c.selector.describe()}; at least {c.at_least} needed")
    if bad:
        shown = tuple(f"{_identity(r)} is {r.get('state')} since {describe_time(r.get('since'))}"
                      for r in sorted(bad, key=_identity)[:_SHOWN])
        return ConditionResult(c.kind, c.label, False, since, f"{len(bad)} of {count} not {states}: "
                               + "; ".join(shown) + (" ..." if len(bad) > _SHOWN else ""), details=shown)
    return ConditionResult(c.kind, c.label, True, since, f"all {count} {states}")


def _silenced(record: Mapping[str, Any], silences: Sequence[Silence], now_ms: int) -> Silence | None:
    facts = ActionFacts(rule="", action_type="", target=str(record.get("subject", "")),
                        group_key=_identity(record), event=record, event_type="vigil.Status")
    return next((s for s in silences if s.covers(facts, now_ms)), None)


def judge_alerts(c: AlertsCondition, summary: StatusSummary, silences: Sequence[Silence],
                 now_ms: int) -> ConditionResult:
    """`summary`: of the identities `c.selector` selects, picking those in `c.states`; `silences`:
    every known silence."""
    open_rows = list(summary.picked)
    active = [s for s in silences if s.active(now_ms)]
    muted = 0
    if not c.count_silenced and active:
        kept = [r for r in open_rows if _silenced(r, active, now_ms) is None]
        muted, open_rows = len(open_rows) - len(kept), kept
    since = summary.latest_since
    note = f" ({muted} more silenced)" if muted else ""
    if len(open_rows) > c.max_open:
        shown = tuple(f"{_identity(r)} {r.get('state')} since {describe_time(r.get('since'))}"
                      for r in sorted(open_rows, key=_identity)[:_SHOWN])
        return ConditionResult(c.kind, c.label, False, since, f"{len(open_rows)} open alert(s), at most "
                               f"{c.max_open} allowed{note}: " + "; ".join(shown), details=shown)
    return ConditionResult(c.kind, c.label, True, since, f"{len(open_rows)} open alert(s) among {summary.count} "
                           f"identities{note}")


def judge_silences(c: SilencesCondition, silences: Sequence[Silence], now_ms: int) -> ConditionResult:
    """`silences`: every known silence (active or ended)."""
    relevant = [s for s in silences if c.counts(s)]
    active = [s for s in relevant if s.active(now_ms)]
    shown = tuple(f"{s.id[:8]} until {describe_time(s.until_ms)}: {s.reason}" for s in active[:_SHOWN])
    if len(active) < c.at_least:
        return ConditionResult(c.kind, c.label, False, None, f"{len(active)} matching active silence(s), at least "
                               f"{c.at_least} needed", details=shown)
    if len(active) > c.max_active:
        return ConditionResult(c.kind, c.label, False, None, f"{len(active)} matching active silence(s), at most "
                               f"{c.max_active} allowed: " + "; ".join(shown), details=shown)
    if active:
        since: int | None = max(s.created_ms for s in active)
    else:
        ended = [min(s.until_ms, now_ms) for s in relevant]
        since = max(ended) if ended else None
    return ConditionResult(c.kind, c.label, True, since, f"{len(active)} matching active silence(s)",
                           details=shown)


# --- metric windows -------------------------------------------------------------------------------------

def _size_for(series: Series, span_ms: int) -> int | None:
    sizes = sorted({int(w["size_ms"]) for w in series})
    if not sizes:
        return None
    fitting = [s for s in sizes if s <= span_ms]
    return fitting[-1] if fitting else sizes[0]


def aggregate_windows(aggregate: str, windows: Sequence[Mapping[str, Any]]) -> float | None:
    """One value from windows of one size (see the module docstring); None without samples."""
    windows = [w for w in windows if int(w.get("count") or 0) > 0]
    if not windows:
        return None
    if aggregate in ("avg", "sum", "count"):
        total = sum(float(w["sum"]) for w in windows)
        count = sum(int(w["count"]) for w in windows)
        return {"avg": total / count, "sum": total, "count": float(count)}[aggregate]
    if aggregate == "min":
        return min(float(w["min"]) for w in windows)
    if aggregate == "max":
        return max(float(w["max"]) for w in windows)
    if aggregate == "last":
        return float(max(windows, key=lambda w: int(w["window_start"]))["last"])
    values = [float(w[aggregate]) for w in windows if w.get(aggregate) is not None]
    return max(values) if values else None


def _judge_series(series: Series, aggregate: str, span_ms: int, test: ValueTest,
                  now_ms: int) -> tuple[float | None, bool, int | None]:
    """(value over the last span, whether it satisfies `test`, since when it has as far as the older
    windows tell, each judged on its own)."""
    size = _size_for(series, span_ms)
    if size is None:
        return None, False, None
    start = now_ms - span_ms
    windows = sorted((w for w in series if int(w["size_ms"]) == size), key=lambda w: int(w["window_start"]))
    current = [w for w in windows if int(w["window_end"]) > start and int(w["window_start"]) <= now_ms]
    value = aggregate_windows(aggregate, current)
    ok = value is not None and test(value)
    if not ok:
        return value, False, None
    first_start = int(current[0]["window_start"]) if current else now_ms
    since = first_start
    for w in reversed([w for w in windows if int(w["window_end"]) <= first_start]):
        own = aggregate_windows(aggregate, [w])
        if own is not None and not test(own):
            return value, True, int(w["window_end"])
        since = int(w["window_start"])
    return value, True, since


def _format(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def judge_metric(c: MetricCondition, series: Mapping[tuple[str, str], Series], now_ms: int) -> ConditionResult:
    """`series`: (subject, name) of every identity `c.selector` selects -> its windows of `c.metric`."""
    if not series:
        return ConditionResult(c.kind, c.label, c.missing_holds, None,
                               f"no identity matches {c.selector.describe()}")
    failing: list[str] = []
    values: list[str] = []
    sinces: list[int] = []
    for (subject, name), windows in sorted(series.items()):
        value, ok, since = _judge_series(windows, c.aggregate, c.over_ms, c.test, now_ms)
        if value is None and c.missing_holds:
            continue
        text = f"{subject}/{name}: {c.aggregate}({c.metric}) = {_format(value)}"
        values.append(text)
        if not ok:
            failing.append(text + ("" if value is None else f", not {c.test_text}"))
        elif since is not None:
            sinces.append(since)
    if failing:
        return ConditionResult(c.kind, c.label, False, None, "; ".join(failing[:_SHOWN])
                               + (" ..." if len(failing) > _SHOWN else ""), details=tuple(failing[:_SHOWN]))
    return ConditionResult(c.kind, c.label, True, max(sinces) if sinces else None,
                           "; ".join(values[:_SHOWN]) + (" ..." if len(values) > _SHOWN else "") or "no data",
                           details=tuple(values[:_SHOWN]))


def _when_holds(when: EventValueTest, row: Mapping[str, Any], negated: bool, value: Any) -> bool:
    return bool(when(value, row, EVENT_TYPE)) != negated


def judge_rule(c: RuleCondition, rows: Sequence[Mapping[str, Any]], series: Mapping[tuple[str, str], Series],
               now_ms: int) -> ConditionResult:
    """`rows`: status records of the identities the rule matches; `series`: for a register rule,
    each of those identities' windows of the register's metric."""
    trigger = c.rule.trigger
    firing: list[str] = []
    sinces: list[int] = []
    if isinstance(trigger, RegisterTrigger):
        for row in rows:
            windows = series.get((str(row["subject"]), str(row["name"])), [])
            # `when` may look its bound up per identity (app.lookups): the status row stands for the event.
            value, ok, since = _judge_series(windows, trigger.aggregate, trigger.period_ms,
                                             partial(_when_holds, trigger.when, row, False), now_ms)
            if ok:
                firing.append(f"{_identity(row)}: {trigger.aggregate}({trigger.metric}) = {_format(value)}")
                if since is not None:
                    sinces.append(since)
            else:
                # Not firing: judged like a metric condition whose bound is the opposite of `when`.
                _, _, quiet = _judge_series(windows, trigger.aggregate, trigger.period_ms,
                                            partial(_when_holds, trigger.when, row, True), now_ms)
                if quiet is not None:
                    sinces.append(quiet)
    else:
        wanted = (trigger.to_state if isinstance(trigger, StatusTrigger)
                  else (lambda state: state != "OK"))
        for row in rows:
            if wanted(str(row.get("state"))):
                firing.append(f"{_identity(row)} is {row.get('state')}")
        since_all = _latest_since(rows)
        if since_all is not None:
            sinces.append(since_all)
    since = max(sinces) if sinces else None
    shown = tuple(sorted(firing)[:_SHOWN])
    if c.firing:
        holds = bool(firing)
        reason = (f"fires for {len(firing)}: " + "; ".join(shown)) if firing else \
            f"fires for none of {len(rows)} matching identities"
    else:
        holds = not firing
        reason = (f"fires for {len(firing)} of {len(rows)}: " + "; ".join(shown)) if firing else \
            f"fires for none of {len(rows)} matching identities"
    return ConditionResult(c.kind, c.label, holds, since, reason, details=shown)


_OWN: Any = object()


def judge(c: Condition, *, rows: Sequence[Mapping[str, Any]] = (), silences: Sequence[Silence] = (),
          series: Mapping[tuple[str, str], Series] | None = None, now_ms: int,
          stable_for_ms: int | None = _OWN, summary: StatusSummary | None = None) -> ConditionResult:
    """Judge any condition from what it reads, then apply `stable_for_ms` (default: its own). A status
    or alerts condition takes `summary` when given (see StatusSummary), else summarizes `rows`."""
    if isinstance(c, StatusCondition):
        result = judge_status(c, summary or summarize(rows, c.states, inside=False), now_ms)
    elif isinstance(c, AlertsCondition):
        result = judge_alerts(c, summary or summarize(rows, c.states, inside=True), silences, now_ms)
    elif isinstance(c, SilencesCondition):
        result = judge_silences(c, silences, now_ms)
    elif isinstance(c, MetricCondition):
        result = judge_metric(c, series or {}, now_ms)
    elif isinstance(c, RuleCondition):
        result = judge_rule(c, rows, series or {}, now_ms)
    else:  # pragma: no cover - every kind is listed above
        raise TypeError(f"unknown condition {type(c).__name__}")
    return _stable(result, c.stable_for_ms if stable_for_ms is _OWN else stable_for_ms, now_ms)
