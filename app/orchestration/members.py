"""The members view rolls discover their targets in: hosts seen through heartbeats (the compacted
`members` topic the workers' members stage keeps, vigil.Member records), alive or failed.

A roll freezes its member list when it starts (hosts in name order, only ALIVE ones); a host that
fails (its heartbeat expired) or goes away later is reported as `left` instead of being waited on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.config import Settings
from app.globs import glob_matcher
from app.model.serde import AvroSerde
from app.orchestration.tailer import CompactedTail
from app.registry.client import RegistryClient

__all__ = ["MEMBERS_TOPIC", "MemberInfo", "MembersView", "StaticMembers", "TopicMembers", "select_members"]

MEMBERS_TOPIC = "members"


@dataclass(frozen=True)
class MemberInfo:
    host: str
    alive: bool
    tags: Mapping[str, str]


class MembersView(Protocol):
    """What the orchestrator asks about members."""

    def ready(self) -> bool: ...

    def members(self) -> Mapping[str, MemberInfo]: ...

    def present(self, host: str) -> bool: ...


def select_members(members: Mapping[str, MemberInfo], host_glob: str, tags: Mapping[str, str]) -> list[MemberInfo]:
    """The alive members whose host and tags match, in host order."""
    host_ok = glob_matcher(host_glob)
    tag_ok = {k: glob_matcher(v) for k, v in tags.items()}
    return sorted((m for m in members.values()
                   if m.alive and host_ok(m.host) and all(k in m.tags and ok(m.tags[k]) for k, ok in tag_ok.items())),
                  key=lambda m: m.host)


class StaticMembers:
    """A fixed view (tests, and runs without members)."""

    def __init__(self, members: list[MemberInfo] | None = None) -> None:
        self._members = {m.host: m for m in members or []}

    def ready(self) -> bool:
        return True

    def members(self) -> Mapping[str, MemberInfo]:
        return self._members

    def present(self, host: str) -> bool:
        member = self._members.get(host)
        return member is not None and member.alive

    def set(self, member: MemberInfo | None, host: str | None = None) -> None:
        """Change one member (None with `host` removes it)."""
        if member is None:
            self._members.pop(host or "", None)
        else:
            self._members[member.host] = member


class TopicMembers:
    """The `members` topic, tailed in a background thread."""

    def __init__(self, settings: Settings) -> None:
        serde = AvroSerde(RegistryClient.from_settings(settings))

        def decode(key: str, raw: bytes) -> MemberInfo:
            record: dict[str, Any] = serde.decode_typed(raw)[1]
            return MemberInfo(str(record["host"]), str(record["state"]) == "ALIVE", dict(record.get("tags") or {}))

        self._tail = CompactedTail(settings, MEMBERS_TOPIC, decode=decode)

    def start(self) -> TopicMembers:
        self._tail.start()
        return self

    def stop(self) -> None:
        self._tail.stop()

    def ready(self) -> bool:
        return self._tail.ready.is_set()

    def members(self) -> Mapping[str, MemberInfo]:
        return self._tail.snapshot()

    def present(self, host: str) -> bool:
        member = self._tail.get(host)
        return isinstance(member, MemberInfo) and member.alive
