"""`print`: log the action (what a rule would do, without doing it). Params are free-form;
`message` (if given) leads the line."""

from __future__ import annotations

import json
import logging

from app.executor.plugin import ActionCall, action

__all__ = ["print_action"]

log = logging.getLogger("vigil.actions")


@action("print", idempotent=True)
async def print_action(call: ActionCall) -> str:
    """Log the action and its params at INFO; the result's output is the same line."""
    a = call.action
    message = call.params.get("message")
    lead = f"{message} " if isinstance(message, str) and message else ""
    line = (f"{lead}[action {a.id} rule={a.rule} target={a.target} event={a.event_id} trace={a.trace_id}] "
            f"params={json.dumps(call.params, sort_keys=True, default=str)}")
    log.info("%s", line)
    return line
