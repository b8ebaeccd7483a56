"""The storm guard (pure): whether a rule may act on an event that actions produced.

A rule does not act again on an event whose causal chain (app.model.chain) already holds that
rule — its own action's event coming back to it, directly or through other rules (A fires an
event B matches, B fires one A matches) — nor on an event more action hops deep than the limit.
Such a firing's actions are not sent: the rules stage records them on actions-suppressed with the
reason, where `vigil trace` and `vigil actions --suppressed` show them, and counts them. A rule
set with an accidental cycle therefore settles after one round instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.model.chain import Chain
from app.model.events import Action

__all__ = ["DEFAULT_MAX_CHAIN_DEPTH", "StormVerdict", "storm_suppressed_record", "storm_verdict", "with_chain"]

#: Events at most this many action hops deep are acted on; deeper ones are not.
DEFAULT_MAX_CHAIN_DEPTH: Final = 3


@dataclass(frozen=True, slots=True)
class StormVerdict:
    """Why a firing is not acted on: `reason` "cycle" or "depth", and a sentence for people."""

    reason: str
    detail: str
    chain: tuple[str, ...]
    depth: int
    max_depth: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded with suppressed actions (`guard: chain` tells it from a silence)."""
        return {"guard": "chain", "reason": self.reason, "detail": self.detail, "chain": list(self.chain),
                "depth": self.depth, "max_depth": self.max_depth}


def storm_verdict(chain: Chain, rule: str, max_depth: int) -> StormVerdict | None:
    """None when `rule` may act on an event with `chain`; else why not."""
    if not chain:
        return None
    if rule in chain.rules:
        return StormVerdict("cycle", f"rule {rule} is already in this event's causal chain ({chain}): acting "
                                     f"again would loop", chain.rules, chain.depth, max_depth)
    if chain.depth > max_depth:
        return StormVerdict("depth", f"the event is {chain.depth} action hops deep ({chain}), over the limit of "
                                     f"{max_depth}", chain.rules, chain.depth, max_depth)
    return None


def with_chain(action: Action, chain: Chain) -> Action:
    """The action carrying its cause event's chain (unchanged when the chain is empty)."""
    return action.model_copy(update={"chain": list(chain.rules)}) if chain.rules else action


def storm_suppressed_record(action: Action, verdict: StormVerdict, now_ms: int) -> dict[str, Any]:
    """The JSON value recorded on actions-suppressed for an action the storm guard held back (the
    same shape as a silence's, with `storm` in place of `silence`)."""
    return {"action": action.to_record(), "time": now_ms, "storm": verdict.to_dict()}
