"""Built-in stage: keeps the compacted `members` topic (keyed by host) up to date from the status
changes of heartbeat identities, for consumers that want membership as a stream (UIs, other apps).
`vigil members` itself reads the workers' live status tables (see cli.py)."""

from __future__ import annotations

from typing import Any

from app.members.model import HEARTBEAT, member_from_status
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.stage import Stage
from app.runtime.tables import Table

__all__ = ["build_members_agent", "build_members_stage"]


def build_members_agent(registry: AgentRegistry | None = None) -> Agent:
    """The `members` agent on `status`, with its own table of first-seen times."""
    #: host -> first time its heartbeat was seen (ms)
    first_seen = Table("members_first_seen", default=None)

    @agent("status", name="members", tables=[first_seen], registry=registry or AgentRegistry())
    def members(status: dict[str, Any], ctx: AgentContext) -> None:
        """Publish a Member record (ALIVE/FAILED) when a host's heartbeat status changes."""
        if status.get("name") != HEARTBEAT:
            return
        host = status["subject"]
        since = first_seen[host]
        if since is None:
            since = first_seen[host] = int(status["last_seen"])
        ctx.send("members", host, member_from_status(status, first_seen_ms=since))

    return members


def build_members_stage() -> Stage:
    """The members stage, for a worker to run."""
    return Stage("members", [build_members_agent()])
