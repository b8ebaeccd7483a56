"""The causal chain of events that actions produced: which rules' actions led to an event.

An event that no action produced has an empty chain. When rule R fires on an event whose chain is
C, its actions carry C (`Action.chain`), and an event one of them produces (`fire_event`) carries
C + [R] in its tags:

    vigil.chain.rules   "A,B"   the rules whose actions led here, oldest first
    vigil.chain.depth   "2"     how many action hops are behind the event

Tags rather than new Event fields: they need no schema change of the busiest record, the status
stage copies an event's tags into the alerts it causes (so the chain survives a status transition),
and they are visible wherever events are (`vigil events tail`, `vigil trace`) and matchable by
rules. Rule names cannot contain commas (app.rules.spec), so a comma separates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CHAIN_DEPTH_TAG", "CHAIN_RULES_TAG", "Chain", "chain_of", "follow_on_tags"]

CHAIN_RULES_TAG: Final = "vigil.chain.rules"
CHAIN_DEPTH_TAG: Final = "vigil.chain.depth"


@dataclass(frozen=True, slots=True)
class Chain:
    """The rules behind an event (oldest first) and its depth (action hops; at least len(rules))."""

    rules: tuple[str, ...] = ()
    depth: int = 0

    def __bool__(self) -> bool:
        return self.depth > 0 or bool(self.rules)

    def __str__(self) -> str:
        return " → ".join(self.rules) if self.rules else "(none)"


_EMPTY: Final = Chain()


def chain_of(record: Mapping[str, Any]) -> Chain:
    """The chain an event or alert record carries in its tags (empty when it has none; a malformed
    depth counts as the number of rules)."""
    tags = record.get("tags")
    if not isinstance(tags, Mapping):
        return _EMPTY
    text, depth_text = tags.get(CHAIN_RULES_TAG), tags.get(CHAIN_DEPTH_TAG)
    if text is None and depth_text is None:
        return _EMPTY
    rules = tuple(r for r in str(text or "").split(",") if r)
    try:
        depth = int(str(depth_text))
    except ValueError:
        depth = 0
    return Chain(rules, max(depth, len(rules)))


def follow_on_tags(cause_chain: Sequence[str], rule: str) -> dict[str, str]:
    """The chain tags of an event produced by an action of `rule` whose cause carried `cause_chain`."""
    rules = [*cause_chain, rule]
    return {CHAIN_RULES_TAG: ",".join(rules), CHAIN_DEPTH_TAG: str(len(rules))}
