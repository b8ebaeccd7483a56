"""Assemble the causal chain around an id: event → rule firing → action → result → follow-on events
→ their actions ... Pure: works on records already read (see history.py for reading them).

Links, all carried by the records themselves:
    action.event_id  the event (or, for status rules, the event behind the transition) that caused it
    action.trace_id  the trace: the root event's id, passed on by fire_event to the events it makes
    result.action_id the action a result reports on
    event.trace_id   set on follow-on events (fire_event), naming the trace they continue
A follow-on event is placed under the action that produced it when it names that action (a tag
value or its origin contains the action id); otherwise directly under the trace's root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.actions.join import ActionRow, held_text, join_actions, suppression_text

__all__ = ["TraceNode", "TraceRecords", "build_trace", "format_time", "render_tree", "resolve_trace_id"]


def format_time(ms: Any) -> str:
    """ms since the epoch as ISO-8601 UTC with milliseconds ('?' when absent)."""
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class TraceNode:
    """One node of the tree: kind is event, firing, action or result."""

    kind: str
    id: str
    record: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible nested form."""
        out: dict[str, Any] = {"kind": self.kind, "id": self.id, "record": self.record}
        if self.note:
            out["note"] = self.note
        out["children"] = [c.to_dict() for c in self.children]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceNode:
        """Inverse of to_dict (a tree the Vigil API sent)."""
        return cls(str(data["kind"]), str(data["id"]), dict(data.get("record") or {}),
                   [cls.from_dict(c) for c in data.get("children") or []], str(data.get("note") or ""))


@dataclass
class TraceRecords:
    """What a trace is built from: decoded records of the time range."""

    events: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    results: list[dict[str, Any]]
    suppressed: list[dict[str, Any]] = field(default_factory=list)


def _trace_of_action(action: Mapping[str, Any]) -> str:
    return str(action.get("trace_id") or action.get("event_id") or action.get("id"))


def resolve_trace_id(target_id: str, records: TraceRecords) -> str | None:
    """The trace an id (event, action, suppressed action or result) belongs to, from the records
    given; None when none of them has that id."""
    actions = {str(a.get("id")): a for a in records.actions}
    actions.update({str((s.get("action") or {}).get("id")): s.get("action") or {} for s in records.suppressed})
    for result in records.results:
        if result.get("id") == target_id:
            action = actions.get(str(result.get("action_id")))
            if action is not None:
                return _trace_of_action(action)
            return str(result.get("trace_id") or result.get("action_id"))
    if target_id in actions:
        return _trace_of_action(actions[target_id])
    for event in records.events:
        if event.get("id") == target_id:
            return str(event.get("trace_id") or target_id)
    return None


def _names_action(event: Mapping[str, Any], action_id: str) -> bool:
    tags = event.get("tags") or {}
    return action_id in tags.values() or action_id in str(event.get("origin") or "")


def _event_label(event: Mapping[str, Any]) -> str:
    return f"{event.get('subject')}/{event.get('name')}"


class _Builder:
    def __init__(self, trace_id: str, records: TraceRecords) -> None:
        self.trace_id = trace_id
        self.events = {str(e.get("id")): e for e in records.events
                       if e.get("id") == trace_id or e.get("trace_id") == trace_id}
        in_trace = [a for a in records.actions if _trace_of_action(a) == trace_id or a.get("event_id") in self.events]
        suppressed = [s for s in records.suppressed if _trace_of_action(s.get("action") or {}) == trace_id]
        self.rows = join_actions(in_trace, records.results, suppressed)
        self.placed: set[str] = set()

    def build(self) -> TraceNode:
        root_event = self.events.get(self.trace_id)
        if root_event is not None:
            root = self.event_node(root_event, "")
        else:
            root = TraceNode("event", self.trace_id, {}, note="not found in the time range read")
            self.placed.add(self.trace_id)
            self.attach_actions(root, self.trace_id)
        # Follow-on events nobody claimed, then actions whose cause event is outside the data read.
        for event_id, event in sorted(self.events.items(), key=lambda kv: (kv[1].get("time") or 0, kv[0])):
            if event_id not in self.placed:
                root.children.append(self.event_node(event, "follow-on"))
        orphans = [r for r in self.rows if str(r.action.get("id")) not in self.placed]
        for cause in dict.fromkeys(str(r.action.get("event_id")) for r in orphans):
            node = TraceNode("event", cause, {}, note="cause not found in the time range read")
            self.attach_actions(node, cause)
            root.children.append(node)
        return root

    def event_node(self, event: dict[str, Any], note: str) -> TraceNode:
        event_id = str(event.get("id"))
        self.placed.add(event_id)
        node = TraceNode("event", event_id, event, note=note)
        self.attach_actions(node, event_id)
        return node

    def attach_actions(self, node: TraceNode, event_id: str) -> None:
        firings: dict[tuple[Any, ...], TraceNode] = {}
        for row in self.rows:
            action = row.action
            if str(action.get("event_id")) != event_id or str(action.get("id")) in self.placed:
                continue
            key = (action.get("rule"), action.get("group_key"), action.get("time"))
            firing = firings.get(key)
            if firing is None:
                firing = firings[key] = TraceNode("firing", f"{key[0]}@{key[2]}", {
                    "rule": key[0], "group_key": key[1], "time": key[2]})
                node.children.append(firing)
            firing.children.append(self.action_node(row))

    def action_node(self, row: ActionRow) -> TraceNode:
        action_id = str(row.action.get("id"))
        self.placed.add(action_id)
        node = TraceNode("action", action_id, row.to_dict())
        node.children.extend(TraceNode("result", str(r.get("id")), r) for r in row.results)
        for event_id, event in sorted(self.events.items(), key=lambda kv: (kv[1].get("time") or 0, kv[0])):
            if event_id not in self.placed and _names_action(event, action_id):
                node.children.append(self.event_node(event, "follow-on"))
        return node


def build_trace(target_id: str, records: TraceRecords) -> TraceNode | None:
    """The trace tree containing `target_id`, rooted at the trace's first event; None if unknown."""
    trace_id = resolve_trace_id(target_id, records)
    return _Builder(trace_id, records).build() if trace_id is not None else None


def _line(node: TraceNode) -> str:
    r = node.record
    note = f"  ({node.note})" if node.note else ""
    if node.kind == "event":
        if not r:
            return f"event {node.id}{note}"
        metrics = " ".join(f"{k}={v:g}" for k, v in (r.get("metrics") or {}).items())
        return (f"event {node.id} {_event_label(r)} at {format_time(r.get('time'))} sev={r.get('severity', '-')} "
                f"{metrics}".rstrip() + note)
    if node.kind == "firing":
        return f"rule {r.get('rule')} fired for {r.get('group_key') or '(all)'} at {format_time(r.get('time'))}"
    if node.kind == "action":
        by = r.get("suppressed_by") or {}
        why = f" {suppression_text(by)}" if by else (f" {held_text(r['held_by'])}" if r.get("held_by") else "")
        return f"action {node.id} {r.get('type')} -> {r.get('target')} {r.get('status')}{why}"
    detail = r.get("error") or r.get("output") or ""
    detail = f": {str(detail).splitlines()[0][:120]}" if detail else ""
    return f"result {node.id} {r.get('status')} after {r.get('attempts', 1)} attempt(s) " \
           f"at {format_time(r.get('finished') or r.get('time'))}{detail}"


def render_tree(root: TraceNode) -> Iterable[str]:
    """The tree as indented text lines."""
    def walk(node: TraceNode, prefix: str, last: bool, top: bool) -> Iterable[str]:
        yield (prefix + ("└─ " if last else "├─ ") if not top else "") + _line(node)
        child_prefix = prefix + ("" if top else ("   " if last else "│  "))
        for i, child in enumerate(node.children):
            yield from walk(child, child_prefix, i == len(node.children) - 1, False)

    yield from walk(root, "", True, True)
