"""Members from heartbeat statuses: pure mapping and the agent feeding the members topic."""

from __future__ import annotations

import pytest

from app.members.agent import build_members_agent
from app.members.model import member_from_status, member_state
from app.runtime.testing import AgentHarness


def status(host: str, state: str, *, since: int = 1_000, last_seen: int = 2_000, name: str = "heartbeat") -> dict:
    return {"subject": host, "name": name, "state": state, "since": since, "last_seen": last_seen,
            "tags": {"role": "web"}, "ttl": 30.0}


@pytest.mark.parametrize(("state", "member"), [("OK", "ALIVE"), ("WARNING", "ALIVE"), ("CRITICAL", "ALIVE"),
                                               ("UNKNOWN", "ALIVE"), ("EXPIRED", "FAILED")])
def test_member_state__failed_only_when_the_heartbeat_expired(state: str, member: str) -> None:
    assert member_state(state) == member


def test_member_from_status__carries_host_tags_times_and_ttl() -> None:
    m = member_from_status(status("web1", "OK"), first_seen_ms=500)
    assert (m.host, m.state, m.tags, m.first_seen, m.last_seen, m.ttl) == ("web1", "ALIVE", {"role": "web"}, 500,
                                                                           2_000, 30.0)


def test_agent__publishes_members_for_heartbeats_only_and_keeps_first_seen() -> None:
    h = AgentHarness([build_members_agent()])
    h.feed_many("status", [status("web1", "OK", last_seen=1_000), status("web1", "EXPIRED", last_seen=5_000),
                           status("web1", "CRITICAL", name="disk")], type_name="vigil.Status")
    out = [o.value for o in h.outputs("members")]
    assert [(m.host, m.state, m.first_seen) for m in out] == [("web1", "ALIVE", 1_000), ("web1", "FAILED", 1_000)]
    assert all(o.key == "web1" for o in h.outputs("members"))
