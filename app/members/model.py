"""Pure: a host's membership from the status of its heartbeat identity (subject = host)."""

from __future__ import annotations

from typing import Any

from app.model.events import Member, MemberState

__all__ = ["HEARTBEAT", "member_from_status", "member_state"]

#: The identity name heartbeat beacons use; its ttl is what makes a silent host FAILED.
HEARTBEAT = "heartbeat"


def member_state(status_state: str) -> MemberState:
    """A heartbeat whose promised next event did not come (EXPIRED) means the host failed."""
    return MemberState.FAILED if status_state == "EXPIRED" else MemberState.ALIVE


def member_from_status(status: dict[str, Any], *, first_seen_ms: int | None = None) -> Member:
    """The Member record for a vigil.Status (or /status answer) of a host's heartbeat identity."""
    return Member(host=status["subject"], state=member_state(str(status["state"])), tags=dict(status.get("tags") or {}),
                  first_seen=first_seen_ms if first_seen_ms is not None else int(status["since"]),
                  last_seen=int(status["last_seen"]), ttl=status.get("ttl"))
