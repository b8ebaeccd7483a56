"""The executor: consumes `actions`, runs action plugins once per action id, publishes one
ActionResult per action to `action-results` (see app.executor.agent and app.executor.runner).

Write a plugin:

    from app.executor import ActionCall, action

    @action("pagerduty")
    async def page(call: ActionCall) -> str: ...

and run `vigil executor --plugins mymodule`.
"""

from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, ActionTimedOut, action

__all__ = ["ActionCall", "ActionFailed", "ActionRejected", "ActionTimedOut", "action"]
