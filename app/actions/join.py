"""Actions joined with what became of them (pure): their results, or the silence (or the storm
guard, app.rules.storms) that suppressed them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["ActionRow", "join_actions", "suppression_text"]


@dataclass
class ActionRow:
    """An action with what became of it: its results (oldest first) or the silence that suppressed it."""

    action: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    #: {"id", "reason", "until_ms", ...} of the silence, or {"guard": "chain", "reason", "detail", ...}
    suppressed: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """SUPPRESSED, the last result's status (DUPLICATE reports do not hide the real one), or PENDING."""
        if self.suppressed is not None:
            return "SUPPRESSED"
        real = [r for r in self.results if r.get("status") != "DUPLICATE"] or self.results
        return str(real[-1].get("status")) if real else "PENDING"

    @property
    def result(self) -> dict[str, Any] | None:
        """The result the status comes from."""
        real = [r for r in self.results if r.get("status") != "DUPLICATE"] or self.results
        return real[-1] if real else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible: the action's fields (params parsed) plus status, results, suppressed_by."""
        action = dict(self.action)
        try:
            action["params"] = orjson.loads(action.get("params") or "{}")
        except orjson.JSONDecodeError:
            pass  # show it as it is
        return {**action, "status": self.status, "results": self.results, "suppressed_by": self.suppressed}

def suppression_text(by: Mapping[str, Any]) -> str:
    """'by silence <id> (<reason>)' or 'by the storm guard (cycle: ...)' for listings and traces."""
    if by.get("guard") == "chain":
        return f"by the storm guard ({by.get('reason')}: {by.get('detail')})"
    return f"by silence {by.get('id')} ({by.get('reason')})"


def join_actions(actions: Iterable[dict[str, Any]], results: Iterable[dict[str, Any]],
                 suppressed: Iterable[dict[str, Any]] = ()) -> list[ActionRow]:
    """Actions (each id once: replays repeat them) joined with their results by action id, and
    suppressed actions as rows of their own; ordered by action time, then id."""
    rows: dict[str, ActionRow] = {}
    for action in actions:
        rows.setdefault(str(action.get("id")), ActionRow(action))
    for record in suppressed:
        action = record.get("action") or {}
        by = record.get("silence") or record.get("storm") or {}
        rows.setdefault(str(action.get("id")), ActionRow(action, suppressed=by))
    for result in sorted(results, key=lambda r: (r.get("time") or 0)):
        row = rows.get(str(result.get("action_id")))
        if row is not None:
            row.results.append(result)
    return sorted(rows.values(), key=lambda r: (r.action.get("time") or 0, str(r.action.get("id"))))
