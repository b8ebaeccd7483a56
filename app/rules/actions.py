"""Firings -> rendered actions with deterministic ids (replays produce the same ids, so executors
run each action once). A template failure drops only that action, reported as a RenderFailure.

Template context (all read-only in the sandbox):
    event    the cause event / alert / last-seen event (Avro-shaped dict)
    data     its custom data (parsed `extended` for vigil.Event, the record for custom types)
    type     its Avro type full name
    rule     {name, description}
    value    register aggregate, count, to_state, or seconds (absence, sequence); None otherwise
    group    the group_by values (`group.subject`); renders as the group key ("web1/load")
    trigger  {kind, id}
    time     firing time, ms since the epoch
    lookup   lookup(KEY, event=None, default=..., merge='first'): hierarchical data (app.lookups.operands)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from app.lookups.operands import lookup_function
from app.model.events import Action
from app.model.ids import deterministic_id
from app.rules.engine import ALERT_TYPE, Firing
from app.rules.fields import MISSING, event_data
from app.rules.spec import ActionSpec, Rule
from app.rules.templates import RenderError, render_tree

__all__ = ["RenderFailure", "RenderedAction", "render_actions", "template_context"]


@dataclass(frozen=True, slots=True)
class RenderedAction:
    """One action ready to publish; `to_action()` gives the vigil.Action record model."""

    id: str
    rule: str
    type: str
    target: str
    params: dict[str, Any]
    group_key: str
    event_id: str | None
    trace_id: str | None
    time_ms: int
    deadline_ms: int | None = None

    def to_action(self) -> Action:
        """The vigil.Action model (params as a canonical JSON object string)."""
        return Action(
            id=self.id, time=self.time_ms, rule=self.rule, type=self.type, target=self.target,
            params=json.dumps(self.params, sort_keys=True, separators=(",", ":")), group_key=self.group_key,
            event_id=self.event_id, trace_id=self.trace_id, deadline=self.deadline_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (the line format of `vigil rules test --json` and --expect)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RenderFailure:
    """An action that was dropped because a template failed; `reason` says which parameter and why."""

    rule: str
    action_index: int
    type: str
    group_key: str
    trigger_id: str
    reason: str

    def __str__(self) -> str:
        return f"rule {self.rule}: action {self.action_index + 1} ({self.type}) dropped: {self.reason}"


class _Group(dict[str, str]):
    """group_by values that render as the group key."""

    def __init__(self, values: Mapping[str, str], key: str) -> None:
        super().__init__(values)
        self._key = key

    def __str__(self) -> str:
        return self._key


def template_context(firing: Firing, rule: Rule) -> dict[str, Any]:
    """The variables action templates see for this firing."""
    data = event_data(firing.event, firing.event_type)
    return {
        "event": firing.event,
        "data": None if data is MISSING else data,
        "type": firing.event_type,
        "rule": {"name": rule.name, "description": rule.description},
        "value": firing.value,
        "group": _Group(firing.group, firing.group_key),
        "trigger": {"kind": firing.trigger, "id": firing.trigger_id},
        "time": firing.time_ms,
        "lookup": lookup_function(rule.lookups, firing.event, firing.event_type),
    }


def _cause_ids(firing: Firing) -> tuple[str | None, str | None]:
    event = firing.event
    own_id = event.get("id") if isinstance(event.get("id"), str) else None
    # A transition's cause is the event that changed the status, when the alert names it.
    event_id = (event.get("cause_event_id") or own_id) if firing.event_type == ALERT_TYPE else own_id
    trace_id = event.get("trace_id") or event_id
    return event_id, trace_id


def _render_one(spec: ActionSpec, firing: Firing, rule: Rule, context: Mapping[str, Any],
                ids: tuple[str | None, str | None]) -> RenderedAction | RenderFailure:
    def failure(reason: str) -> RenderFailure:
        return RenderFailure(rule.name, spec.index, spec.type, firing.group_key, firing.trigger_id, reason)

    try:
        params = render_tree(spec.params, context)
        target = (spec.target.render(context) if spec.target else str(firing.event.get("subject") or ""))
    except RenderError as exc:
        return failure(str(exc))
    target = target.strip()
    if not target:
        return failure("target rendered empty; set `target:` or make sure the event has a subject")
    action_id = deterministic_id(rule.name, firing.group_key, firing.trigger_id, str(spec.index))
    deadline = firing.time_ms + spec.deadline_ms if spec.deadline_ms is not None else None
    return RenderedAction(action_id, rule.name, spec.type, target, params, firing.group_key, *ids,
                          time_ms=firing.time_ms, deadline_ms=deadline)


def render_actions(firing: Firing, rule: Rule) -> list[RenderedAction | RenderFailure]:
    """Render every action of `rule` for `firing`, in order; never raises for template problems."""
    context = template_context(firing, rule)
    ids = _cause_ids(firing)
    return [_render_one(spec, firing, rule, context, ids) for spec in rule.actions]
