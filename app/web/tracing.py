""""Why did this fire": the records of a trace gathered from the UI's history store and the archive
index, for app.actions.trace to assemble (the same tree `vigil trace` prints).

Bounded, never a scan: the store finds the actions of the trace (by trace id, or by cause event),
their results and suppressions; the events come from the archive index by id -- the root event,
and the follow-on events that `fire_event` actions made (their results name the event id they
produced) -- at most MAX_EVENTS of them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from app.actions.join import ActionRow
from app.actions.trace import TraceRecords, build_trace
from app.web.store import HistoryStore

__all__ = ["MAX_EVENTS", "TraceAnswer", "gather_trace"]

MAX_EVENTS: Final = 200
#: What the fire_event plugin returns as its output: "event <id> <subject/name>".
_FIRED: Final = re.compile(r"^event (\S+) ")

#: Reads an event by id (via the archive index and Kafka); None when unknown.
EventLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass
class TraceAnswer:
    """The tree and what it was made of."""

    tree: dict[str, Any]
    trace_id: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    events_missing: list[str] = field(default_factory=list)


def _fired_event_id(row: ActionRow) -> str | None:
    if row.action.get("type") != "fire_event":
        return None
    for result in row.results:
        match = _FIRED.match(str(result.get("output") or ""))
        if match:
            return match.group(1)
    return None


async def gather_trace(target_id: str, store: HistoryStore, lookup: EventLookup) -> TraceAnswer | None:
    """The trace containing `target_id` (an event, alert, action or result id); None when unknown."""
    def find_action() -> tuple[list[ActionRow], dict[str, Any] | None]:
        result = store.result(target_id)
        rows = store.actions_by_ids([result["action_id"] if result else target_id])
        return rows, store.alert(target_id) if not rows else None

    rows, alert = await asyncio.to_thread(find_action)
    start_id = target_id
    events: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    if rows:
        action = rows[0].action
        trace_id = str(action.get("trace_id") or action.get("event_id") or action.get("id"))
    else:
        if alert is not None and alert.get("cause_event_id"):
            start_id = str(alert["cause_event_id"])
        event = await lookup(start_id)
        if event is None:
            return None
        events[start_id] = event
        trace_id = str(event.get("trace_id") or start_id)
    if trace_id not in events:
        root = await lookup(trace_id)
        if root is not None:
            events[trace_id] = root
        else:
            missing.append(trace_id)
    # Follow the chain: actions of the trace, the events their fire_event actions made, theirs ...
    seen_rows: dict[str, ActionRow] = {}
    while len(events) < MAX_EVENTS:
        found = await asyncio.to_thread(store.actions_of_trace, trace_id, list(events))
        new_rows = [r for r in found if str(r.action.get("id")) not in seen_rows]
        for row in new_rows:
            seen_rows[str(row.action.get("id"))] = row
        follow_ons = [e for e in (_fired_event_id(r) for r in new_rows) if e and e not in events and e not in missing]
        if not follow_ons:
            break
        for event_id, event in zip(follow_ons, await asyncio.gather(*(lookup(e) for e in follow_ons)), strict=True):
            if event is not None:
                events[event_id] = event
            else:
                missing.append(event_id)
    all_rows = list(seen_rows.values())
    records = TraceRecords(events=list(events.values()),
                           actions=[r.action for r in all_rows if r.suppressed is None],
                           results=[res for r in all_rows for res in r.results],
                           suppressed=[{"action": r.action, "silence": r.suppressed} for r in all_rows
                                       if r.suppressed is not None]
                           + [{"action": r.action, "dependency": r.held} for r in all_rows if r.held is not None])
    tree = build_trace(start_id if start_id in events or rows else trace_id, records)
    if tree is None:
        return None
    alerts = await asyncio.to_thread(store.alerts_caused_by, list(events))
    rules = sorted({str(r.action.get("rule")) for r in all_rows})
    return TraceAnswer(tree.to_dict(), trace_id, alerts, rules, missing)
