"""What a backtest prints and writes: a summary per rule, the report file (one would-be action per
line, JSON), and, for two rule sets, their difference per rule and target. Pure: actions in, text
and JSON-ready values out. Everything is sorted, so the same actions give byte-identical output.

A firing is one rule firing for one group (its actions share it), named by its first action's
deterministic id. The same firing under both rule sets has the same ids -- the same trigger on the
same facts -- so comparing needs no guessing: a firing only in A is one the new rules would no
longer make, one only in B a new one, and one in both may have moved in time (an `absent_for`
firing earlier for the same silence).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from app.backtest.replayer import FiredAction
from app.pipeline.validate import format_time_ms

__all__ = ["RuleSummary", "TargetDiff", "compare_rule_sets", "diff_json", "firing_of", "render_compare",
           "render_summary", "report_lines", "summarize", "summary_json"]

_DASH: Final = "-"


def firing_of(action: FiredAction) -> str:
    """The firing an action belongs to (its first action's id)."""
    return action.firing or action.id


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """One rule's would-be firings in a backtest."""

    rule: str
    firings: int
    actions: int
    targets: int
    first_ms: int
    last_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "firings": self.firings, "actions": self.actions, "targets": self.targets,
                "first": format_time_ms(self.first_ms), "last": format_time_ms(self.last_ms)}


def summarize(actions: Iterable[FiredAction], ruleset: int = 0) -> list[RuleSummary]:
    """Per rule of one rule set: firings, actions, distinct targets, first and last firing time."""
    by_rule: dict[str, list[FiredAction]] = defaultdict(list)
    for action in actions:
        if action.ruleset == ruleset:
            by_rule[action.rule].append(action)
    return [RuleSummary(rule, len({firing_of(a) for a in found}), len(found), len({a.target for a in found}),
                        min(a.time_ms for a in found), max(a.time_ms for a in found))
            for rule, found in sorted(by_rule.items())]


def _line(action: FiredAction, **extra: Any) -> str:
    record = {**action.to_json(), "at": format_time_ms(action.time_ms), **extra}
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def report_lines(actions: Sequence[FiredAction], *, compare: bool = False) -> Iterator[str]:
    """The report file's lines: every would-be action as JSON (id, rule, type, target, params, time
    and `at`, group_key, event_id, trace_id, deadline, causes, firing), in firing order. Comparing,
    each action once with `side` "a", "b" or "both" (and `params_b` / `time_b` when B renders other
    parameters / fires it at another time)."""
    order = sorted(actions, key=lambda a: (a.time_ms, a.rule, a.group_key, a.id, a.ruleset))
    if not compare:
        for action in order:
            yield _line(action)
        return
    in_b = {a.id: a for a in actions if a.ruleset == 1}
    in_a = {a.id for a in actions if a.ruleset == 0}
    for action in order:
        if action.ruleset == 0:
            other = in_b.get(action.id)
            if other is None:
                yield _line(action, side="a")
                continue
            extra: dict[str, Any] = {}
            if other.params != action.params:
                extra["params_b"] = json.loads(other.params)
            if other.time_ms != action.time_ms:
                extra["time_b"] = other.time_ms
            yield _line(action, side="both", **extra)
        elif action.id not in in_a:
            yield _line(action, side="b")


@dataclass(frozen=True, slots=True)
class TargetDiff:
    """The firings of one rule for one target under rule sets A and B."""

    rule: str
    target: str
    only_a: tuple[FiredAction, ...]
    only_b: tuple[FiredAction, ...]
    both: int
    #: firings in both at different times: (under A, under B)
    moved: tuple[tuple[FiredAction, FiredAction], ...] = ()

    @property
    def differs(self) -> bool:
        return bool(self.only_a or self.only_b or self.moved)

    def to_json(self) -> dict[str, Any]:
        def first(found: tuple[FiredAction, ...]) -> dict[str, Any] | None:
            if not found:
                return None
            action = found[0]
            return {"time": action.time_ms, "at": format_time_ms(action.time_ms), "action_id": action.id,
                    "event_id": action.event_id, "causes": list(action.causes)}

        moved = None
        if self.moved:
            a, b = self.moved[0]
            moved = {"action_id": a.id, "event_id": a.event_id, "time_a": a.time_ms, "at_a": format_time_ms(a.time_ms),
                     "time_b": b.time_ms, "at_b": format_time_ms(b.time_ms)}
        return {"rule": self.rule, "target": self.target, "only_a": len(self.only_a), "only_b": len(self.only_b),
                "both": self.both, "moved": len(self.moved), "first_only_a": first(self.only_a),
                "first_only_b": first(self.only_b), "first_moved": moved}


def compare_rule_sets(actions: Iterable[FiredAction]) -> list[TargetDiff]:
    """Per rule and target, the firings only under A (rule set 0), only under B (1) and under both;
    the ones that differ first, then by rule and target."""
    firings: dict[tuple[str, str], list[dict[str, FiredAction]]] = defaultdict(lambda: [{}, {}])
    for action in sorted(actions, key=lambda a: (a.time_ms, a.id)):
        sides = firings[(action.rule, action.target)]
        sides[action.ruleset].setdefault(firing_of(action), action)
    diffs = []
    for (rule, target), (a, b) in firings.items():
        diffs.append(TargetDiff(rule, target, tuple(v for k, v in a.items() if k not in b),
                                tuple(v for k, v in b.items() if k not in a), sum(1 for k in a if k in b),
                                tuple((v, b[k]) for k, v in a.items() if k in b and b[k].time_ms != v.time_ms)))
    return sorted(diffs, key=lambda d: (not d.differs, d.rule, d.target))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                         for i, cell in enumerate(row)).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def render_summary(rows: Sequence[RuleSummary]) -> str:
    """The summary table: rule, firings, distinct targets, first and last firing."""
    if not rows:
        return "no rule fired"
    return _table(("RULE", "FIRINGS", "ACTIONS", "TARGETS", "FIRST", "LAST"),
                  [(r.rule, str(r.firings), str(r.actions), str(r.targets), format_time_ms(r.first_ms),
                    format_time_ms(r.last_ms)) for r in rows], frozenset({1, 2, 3}))


def _first(found: tuple[FiredAction, ...]) -> str:
    if not found:
        return _DASH
    action = found[0]
    return f"{format_time_ms(action.time_ms)} ({action.event_id or 'no event'})"


def _moved(diff: TargetDiff, side: int) -> str:
    """The first moved firing's time on one side (for the columns of firings only on a side)."""
    if not diff.moved:
        return _DASH
    action = diff.moved[0][side]
    return f"{format_time_ms(action.time_ms)} (moved; {action.event_id or 'no event'})"


def render_compare(diffs: Sequence[TargetDiff], *, limit: int = 40) -> str:
    """Per rule (firings under A and B, only in one, in both), then per rule and target where they
    differ, with the first firing only in A and only in B and its cause (at most `limit` rows)."""
    per_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for d in diffs:
        totals = per_rule[d.rule]
        totals[0] += len(d.only_a)
        totals[1] += len(d.only_b)
        totals[2] += d.both
        totals[3] += len(d.moved)
    rules = _table(("RULE", "A", "B", "ONLY A", "ONLY B", "BOTH", "MOVED"),
                   [(rule, str(t[0] + t[2]), str(t[1] + t[2]), str(t[0]), str(t[1]), str(t[2]), str(t[3]))
                    for rule, t in sorted(per_rule.items())], frozenset({1, 2, 3, 4, 5, 6}))
    differing = [d for d in diffs if d.differs]
    if not differing:
        return f"{rules}\n\nboth rule sets fire the same" if per_rule else "no rule fired under either rule set"
    shown = differing[:limit]
    header = ("RULE", "TARGET", "ONLY A", "ONLY B", "BOTH", "MOVED", "FIRST ONLY IN A (CAUSE)",
              "FIRST ONLY IN B (CAUSE)")
    targets = _table(header,
                     [(d.rule, d.target, str(len(d.only_a)), str(len(d.only_b)), str(d.both), str(len(d.moved)),
                       _first(d.only_a) if d.only_a else _moved(d, 0), _first(d.only_b) if d.only_b else _moved(d, 1))
                      for d in shown], frozenset({2, 3, 4, 5}))
    more = f"\n... {len(differing) - limit} more rule/target pairs differ (all in --report and --json)" \
        if len(differing) > limit else ""
    return f"{rules}\n\n{targets}{more}"


def diff_json(diffs: Sequence[TargetDiff]) -> list[dict[str, Any]]:
    """The comparison for --json (every rule and target, the differing ones first)."""
    return [d.to_json() for d in diffs]


def summary_json(actions: Sequence[FiredAction], rulesets: int) -> dict[str, Any]:
    """Per rule set, the summary rows (and the comparison when there are two)."""
    out: dict[str, Any] = {"rules": [r.to_json() for r in summarize(actions, 0)]}
    if rulesets > 1:
        out["rules_b"] = [r.to_json() for r in summarize(actions, 1)]
        out["compare"] = diff_json(compare_rule_sets(actions))
    return out
