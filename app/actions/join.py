"""Actions joined with what became of them (pure): their results, or the silence (or the storm
guard, app.rules.storms, or a failing dependency, app.rules.inhibit) that suppressed them.

A firing a dependency held back is recorded on actions-suppressed; when it is released later, the
same action (same id) is on `actions` too: its row is then the sent action, with `held` saying
what held it back meanwhile."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["ActionRow", "held_text", "join_actions", "suppression_text"]


@dataclass
class ActionRow:
    """An action with what became of it: its results (oldest first) or the silence that suppressed it."""

    action: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    #: {"id", "reason", "until_ms", ...} of the silence, {"guard": "chain", "reason", "detail", ...} of
    #: the storm guard, or {"guard": "dependency", "dependency", "identity", "state", "since_ms", ...}
    suppressed: dict[str, Any] | None = None
    #: a dependency that held the action back before it was released (sent): its reason, as above
    held: dict[str, Any] | None = None

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
        out = {**action, "status": self.status, "results": self.results, "suppressed_by": self.suppressed}
        if self.held is not None:
            out["held_by"] = self.held
        return out

def suppression_text(by: Mapping[str, Any]) -> str:
    """'by silence <id> (<reason>)', 'by the storm guard (cycle: ...)' or 'by dependency <name> (...)'
    for listings and traces."""
    if by.get("guard") == "chain":
        return f"by the storm guard ({by.get('reason')}: {by.get('detail')})"
    if by.get("guard") == "dependency":
        return f"by {by.get('detail')}"
    return f"by silence {by.get('id')} ({by.get('reason')})"


def held_text(by: Mapping[str, Any]) -> str:
    """'(held by dependency ..., then released)' for an action a dependency delayed."""
    return f"(held {suppression_text(by)}, then released)"


def join_actions(actions: Iterable[dict[str, Any]], results: Iterable[dict[str, Any]],
                 suppressed: Iterable[dict[str, Any]] = ()) -> list[ActionRow]:
    """Actions (each id once: replays repeat them) joined with their results by action id, and
    suppressed actions as rows of their own; ordered by action time, then id."""
    rows: dict[str, ActionRow] = {}
    for action in actions:
        rows.setdefault(str(action.get("id")), ActionRow(action))
    for record in suppressed:
        action = record.get("action") or {}
        by = record.get("silence") or record.get("storm") or record.get("dependency") or {}
        row = rows.get(str(action.get("id")))
        if row is None:
            rows[str(action.get("id"))] = ActionRow(action, suppressed=by)
        elif row.suppressed is None and "dependency" in record:
            row.held = by  # held back, then released: the row is the sent action
    for result in sorted(results, key=lambda r: (r.get("time") or 0)):
        row = rows.get(str(result.get("action_id")))
        if row is not None:
            row.results.append(result)
    return sorted(rows.values(), key=lambda r: (r.action.get("time") or 0, str(r.action.get("id"))))
