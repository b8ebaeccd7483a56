"""A user plugin module for CLI tests (`--plugins tests.unit.executor.sample_plugin`)."""

from __future__ import annotations

from app.executor import ActionCall, action


@action("sample-ticket", idempotent=True)
async def open_ticket(call: ActionCall) -> str:
    """Pretend to open a ticket."""
    return f"ticket for {call.action.target}"
