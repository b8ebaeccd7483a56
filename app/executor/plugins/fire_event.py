"""`fire_event`: produce a vigil.Event back onto `events` (e.g. "remediation done").

Params: name (required), subject (default: the action's target), kind, severity, text, tags,
metrics, ttl, and `data` (the event's extended data; `extended` is accepted as a synonym, and
both merge). The event carries the action's trace id, a tag `action_id` and, in
`extended.action`, the action id, rule and cause event, so the trace can be followed across hops.
It also carries its causal chain (tags `vigil.chain.rules` and `vigil.chain.depth`, app.model.chain:
the action's chain plus its rule), which params cannot override: the rules stage uses it to stop
rule cycles and chains that run too deep (app.rules.storms).

The event is sent through the executor's commit (ActionCall.send), not a separate producer:
under exactly-once it is published in the same transaction as the action's result, and its id is
derived from the action id, so a re-run after a crash can never add a second, different event.
That is why the plugin is declared idempotent.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.executor.plugin import ActionCall, ActionRejected, action
from app.executor.plugins.params import check_keys, get_param
from app.model.chain import follow_on_tags
from app.model.events import Event, now_ms
from app.model.ids import deterministic_id

__all__ = ["EVENTS_TOPIC", "ORIGIN", "build_event", "fire_event"]

EVENTS_TOPIC = "events"
ORIGIN = "vigil-executor"
_FIELDS = ("subject", "name", "kind", "severity", "text", "tags", "metrics", "ttl", "data", "extended")


def build_event(call: ActionCall) -> Event:
    """The event an action asks for (ActionRejected when the params do not make a valid event)."""
    p, a = call.params, call.action
    check_keys(p, _FIELDS, plugin="fire_event")
    extended = {**get_param(p, "extended", dict, default={}, plugin="fire_event"),
                **get_param(p, "data", dict, default={}, plugin="fire_event")}
    fields: dict[str, Any] = {k: p[k] for k in ("kind", "severity", "text", "metrics", "ttl") if p.get(k) is not None}
    if isinstance(fields.get("kind"), str):
        fields["kind"] = fields["kind"].upper()
    tags = get_param(p, "tags", dict, default={}, plugin="fire_event")
    try:
        return Event(
            id=deterministic_id("fire_event", a.id), time=now_ms(), origin=ORIGIN,
            subject=get_param(p, "subject", str, default=a.target, plugin="fire_event"),
            name=get_param(p, "name", str, plugin="fire_event"),
            tags={**tags, "action_id": a.id, **follow_on_tags(a.chain, a.rule)},
            extended={**extended, "action": {"id": a.id, "rule": a.rule, "event_id": a.event_id}},
            trace_id=a.trace_id or a.event_id, **fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ActionRejected(f"fire_event: not a valid event: {problems}") from None


@action("fire_event", idempotent=True)
async def fire_event(call: ActionCall) -> str:
    """Produce a vigil.Event onto `events` carrying the action's trace id."""
    event = build_event(call)
    call.send(EVENTS_TOPIC, event.key, event)
    return f"event {event.id} {event.key}"
