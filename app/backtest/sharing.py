"""Which rules a backtest comparing two rule sets evaluates once for both (pure).

`vigil backtest --compare` runs rule sets A and B over the same history; B usually changes a few
rules of A. A rule that is the same in both sets (same name, same definition: every key of the
rule as parsed, not the text or where it is written) and that no other rule can influence fires
the same firings in both, so it is evaluated once, in a share of its own, and its would-be
actions are reported for both sets. Each set's other rules are evaluated in a share of their own:

    A = {r1, r2, r3},  B = {r1, r2', r4}   ->   shares {r1} (A and B), {r2, r3} (A), {r2', r4} (B)

What can make one rule of a set depend on another, and why it does not here:

- State: every piece of trigger and throttle state and every timer is keyed by its rule's name
  ("<rule>/<kind>/<group>", app.rules.engine); a rule reads and writes only its own. Nothing
  executes in a backtest, so no action feeds an event back (the storm guard reads the chain an
  event of the history carries, and the rule's own name: per rule). A backtest's stages have no
  silences and no reloading (app.backtest.run).
- Routing: a record goes to each group key of the rules it matches, and a group's evaluation runs
  the rules of that key; which other rules share the key changes which records a group's
  partition sees, not what any rule sees: each rule sees exactly the records it matches, in the
  same order (the merged event-time order of their streams, whatever else is in between).
- Timers: each share's absence timers fire at their due times (app.backtest.clock), before its
  first record past them, whatever other records are around. Schedules are the exception: a
  schedule started while a batch runs is judged when the batch ends, and batches end where the
  other rules' records and timers put them, so `schedule`/`every` rules are never shared. (Their
  starts are also keyed by their state fingerprint, which two schedule rules may have in common.)
- Firings and reports: which actions belong to one firing is told per rule (app.backtest.replayer),
  so other rules' actions in between change nothing; action ids hash the rule, group, trigger and
  action index only; reports are sorted.
- Causes (app.backtest.causes): a group's log holds the records of every rule of its key, bounded
  (records per group, a look-back window of the set's longest). A share's log keeps at least what
  the whole set's would (its window is the longest of the sets it serves, and it holds fewer
  records per group), so its causes equal the whole set's whenever those were complete; they can
  only be more complete where a whole set's bounded log had lost some.
- State expiry (app.runtime.expiry) runs on the evaluation's watermark, the latest event time it
  has seen, which the other rules' records move too. It forgets only state no trigger or throttle
  still spans and that owes nothing, after the retention (7 days by default); a run of several
  processes, each evaluating its own groups, depends on the same property.
- Errors: records a route agent cannot route (no valid `time`) fail before any rule is looked at,
  so the same records fail in every share: they are counted once per rule set, as in a full run.
  Evaluation raises on no record it is routed (routing validated it; templates fail without
  raising: counted render failures). Should a rule raise anyway, the engine drops that record's
  evaluation for its whole group: in a whole set the other rules' too, in a share only the share's.
  That is the one case a share could differ; it shows as an agent error (`rules_evaluate`).
- Lookups (app.lookups): a rule reads its own directory's hierarchy and data, so rules are shared
  only when both directories' lookup data are the same (same content digest, or none in either).

With one rule set, or no rule shared, every set is evaluated whole, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.backtest.causes import look_back_window_ms
from app.rules.loader import RuleSet
from app.rules.spec import Rule
from app.rules.triggers import ScheduleTrigger

__all__ = ["Share", "plan_shares", "shareable"]


@dataclass(frozen=True)
class Share:
    """Rules evaluated together, and whose would-be actions their firings are."""

    ruleset: RuleSet
    #: the rule sets (indices of the backtest's) whose actions this share's firings are
    serves: tuple[int, ...]
    #: how many rule sets' unroutable records this share counts (each is counted once per set)
    counts_route_errors: int = 1
    #: the look-back its cause log keeps at least: the longest of the sets it serves (None: its own)
    cause_window_ms: int | None = None


def shareable(rule: Rule, other: Rule | None) -> bool:
    """Whether `rule` of one set and `other` (same name, of the other set) can be evaluated once."""
    return (other is not None and rule.enabled and other.enabled and bool(rule.definition)
            and rule.definition == other.definition and not isinstance(rule.trigger, ScheduleTrigger)
            and _same_lookups(rule, other))


def _same_lookups(rule: Rule, other: Rule) -> bool:
    """Whether both read the same lookup data (app.lookups: each rule set's directory has its own)."""
    digest = rule.lookups.data.digest if rule.lookups is not None else ""
    return digest == (other.lookups.data.digest if other.lookups is not None else "")


def plan_shares(rulesets: Sequence[RuleSet]) -> list[Share]:
    """The shares to evaluate `rulesets` in (see the module docstring): one per rule set unless two
    are compared and have shareable rules; then the shared rules, and each set's others (if any)."""
    whole = [Share(ruleset, (i,)) for i, ruleset in enumerate(rulesets)]
    if len(rulesets) != 2:
        return whole
    a, b = rulesets
    shared = {rule.name for rule in a.enabled if shareable(rule, b.get(rule.name))}
    if not shared:
        return whole
    windows = [look_back_window_ms(ruleset) for ruleset in rulesets]
    known = [w for w in windows if w is not None]
    shares = [Share(RuleSet(tuple(r for r in a.enabled if r.name in shared)), (0, 1), 2,
                    max(known) if known else None)]
    for i, ruleset in enumerate(rulesets):
        own = tuple(r for r in ruleset.enabled if r.name not in shared)
        if own:
            shares.append(Share(RuleSet(own), (i,), 0, windows[i]))
    return shares
