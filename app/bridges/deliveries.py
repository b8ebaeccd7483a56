"""Which deliveries the HTTP bridge has already accepted: delivery keys, the records of the
`deliveries` ledger topic, and the fold of those records that every bridge replica computes alike.

A delivery key names one delivery however often it is sent: a client's `Idempotency-Key` header
(any endpoint; draft-ietf-httpapi-idempotency-key-header), GitHub's `X-GitHub-Delivery` (the same
GUID on a redelivery), or for Alertmanager, which sends no id, one derived from the group key and
each alert's fingerprint, status, startsAt and endsAt (`app.bridges.parsers.alertmanager`): a resend
of an unchanged group on its repeat interval has the same key, a group that changed has another.

The ledger is a log of records per key (JSON, keyed by the delivery key so a key's records are
ordered in one partition): `claimed` by a request about to produce a delivery's events, then
`accepted` (with how many) or `released` (it failed: a retry may produce). `DeliveryIndex` folds
them in log order with rules that read only the records, so every replica that has read the same
records decides the same: the first live claim of a key wins; a claim made while another is live
(younger than `lease_ms`, by the records' times) or while the key is accepted (within `window_ms`)
loses. Pure: no Kafka, no clock (callers pass `now_ms`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final

from app.bridges.errors import ParseError

__all__ = [
    "ACCEPTED",
    "CLAIMED",
    "IDEMPOTENCY_HEADER",
    "RELEASED",
    "DeliveryIndex",
    "DeliveryKey",
    "Entry",
    "LedgerRecord",
    "Verdict",
    "body_fingerprint",
    "header_delivery_key",
]

CLAIMED: Final = "claimed"
ACCEPTED: Final = "accepted"
RELEASED: Final = "released"
_STATES = frozenset({CLAIMED, ACCEPTED, RELEASED})
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: Longest delivery id or idempotency key taken (UUIDs and the like are far shorter).
MAX_KEY_CHARS: Final = 255


@dataclass(frozen=True)
class DeliveryKey:
    """One delivery's identity: `key` (namespaced by endpoint), where it came from (for messages),
    and `fingerprint`, the body's hash when a reuse with another body is the sender's mistake
    (Idempotency-Key: 422), else "" (a GitHub redelivery, an Alertmanager resend)."""

    key: str
    origin: str
    fingerprint: str = ""


def body_fingerprint(body: bytes) -> str:
    """The SHA-256 of a request body, hex."""
    return hashlib.sha256(body).hexdigest()


def header_delivery_key(endpoint: str, header: str, value: str | None, *, body: bytes | None = None,
                        ) -> DeliveryKey | None:
    """The key of a delivery named by a header (None when the header is absent); ParseError naming
    the header if its value is not a usable key. With `body`, a reuse with another body is a conflict.

    An Idempotency-Key may come as a structured-field string (`"abc"`, as the draft writes it) or
    bare (`abc`, as most clients send it): both name the same key."""
    if value is None:
        return None
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text:
        raise ParseError(header, "is empty: send a unique value per delivery (e.g. a UUID), or no header")
    if len(text) > MAX_KEY_CHARS:
        raise ParseError(header, f"is {len(text)} characters long; at most {MAX_KEY_CHARS} are accepted")
    if not all(" " <= ch <= "~" for ch in text):
        raise ParseError(header, "must be printable ASCII")
    return DeliveryKey(f"{endpoint}/{header.lower()}/{text}", f"{header} {text!r}",
                       body_fingerprint(body) if body is not None else "")


@dataclass(frozen=True)
class LedgerRecord:
    """One record of the `deliveries` topic (its Kafka key is `key`)."""

    key: str
    state: str  # CLAIMED, ACCEPTED or RELEASED
    owner: str  # the claiming request's unique id
    at_ms: int  # the writer's wall clock
    accepted: int = 0  # events accepted (ACCEPTED)
    fingerprint: str = ""

    def to_json(self) -> bytes:
        """The record's value (the key travels as the Kafka key too)."""
        body: dict[str, Any] = {"key": self.key, "state": self.state, "owner": self.owner, "at_ms": self.at_ms}
        if self.accepted:
            body["accepted"] = self.accepted
        if self.fingerprint:
            body["fingerprint"] = self.fingerprint
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, value: bytes) -> LedgerRecord:
        """Decode a record; ValueError (with what is wrong) if it is not one."""
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        state = data.get("state")
        if state not in _STATES:
            raise ValueError(f"unknown state {state!r}")
        key, owner, at_ms = data.get("key"), data.get("owner"), data.get("at_ms")
        if not isinstance(key, str) or not isinstance(owner, str) or type(at_ms) is not int:
            raise ValueError("key, owner (strings) and at_ms (integer) are required")
        accepted = data.get("accepted", 0)
        fingerprint = data.get("fingerprint", "")
        if type(accepted) is not int or not isinstance(fingerprint, str):
            raise ValueError("accepted must be an integer and fingerprint a string")
        return cls(key, state, owner, at_ms, accepted, fingerprint)


@dataclass(frozen=True)
class Entry:
    """What the ledger says of one key now."""

    state: str
    owner: str
    claimed_ms: int
    fingerprint: str
    accepted_ms: int = 0
    accepted: int = 0


class Verdict(Enum):
    """What a request carrying a delivery key does."""

    NEW = "new"  # nobody has it: claim it
    WON = "won"  # this request's claim is the live one: produce
    DUPLICATE = "duplicate"  # accepted already: answer success without producing
    CONFLICT = "conflict"  # the key was used with another body
    BUSY = "busy"  # another request holds a live claim: wait for its outcome


@dataclass(frozen=True)
class Decision:
    """A verdict, with the entry it was read from (None for NEW) and, for BUSY, when the other
    request's claim lapses (ms)."""

    verdict: Verdict
    entry: Entry | None = None
    busy_until_ms: int = 0


class DeliveryIndex:
    """The fold of the ledger's records (see the module docstring); not thread-safe by itself."""

    def __init__(self, *, window_ms: int, lease_ms: int) -> None:
        if window_ms <= 0 or lease_ms <= 0:
            raise ValueError("window_ms and lease_ms must be positive")
        self.window_ms = window_ms
        self.lease_ms = lease_ms
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        """The entry of `key`, if the ledger has one."""
        return self._entries.get(key)

    def apply(self, record: LedgerRecord) -> None:
        """Fold one record, in log order."""
        entry = self._entries.get(record.key)
        if record.state == CLAIMED:
            if entry is None or self._claimable(entry, record.at_ms):
                self._entries[record.key] = Entry(CLAIMED, record.owner, record.at_ms, record.fingerprint)
        elif record.state == ACCEPTED:
            if entry is not None and entry.state == ACCEPTED and entry.accepted_ms and \
                    record.at_ms - entry.accepted_ms < self.window_ms:
                return  # accepted already (a second writer after a lapsed lease): the first counts
            base = entry or Entry(CLAIMED, record.owner, record.at_ms, record.fingerprint)
            self._entries[record.key] = replace(base, state=ACCEPTED, owner=record.owner, accepted_ms=record.at_ms,
                                                accepted=record.accepted)
        elif entry is None or (entry.state == CLAIMED and entry.owner == record.owner):  # RELEASED
            self._entries[record.key] = Entry(RELEASED, record.owner, record.at_ms, record.fingerprint)

    def _claimable(self, entry: Entry, at_ms: int) -> bool:
        """Whether a claim made at `at_ms` takes the key over from `entry`."""
        if entry.state == RELEASED:
            return True
        if entry.state == CLAIMED:
            return at_ms - entry.claimed_ms >= self.lease_ms
        return at_ms - entry.accepted_ms >= self.window_ms  # ACCEPTED: a new delivery once the window passed

    def check(self, key: str, fingerprint: str, now_ms: int) -> Decision:
        """What a request for `key` (with a body of `fingerprint`) should do now, before claiming."""
        entry = self._entries.get(key)
        if entry is None or self._claimable(entry, now_ms):
            return Decision(Verdict.NEW, entry)
        if fingerprint and entry.fingerprint and fingerprint != entry.fingerprint:
            return Decision(Verdict.CONFLICT, entry)
        if entry.state == ACCEPTED:
            return Decision(Verdict.DUPLICATE, entry)
        return Decision(Verdict.BUSY, entry, busy_until_ms=entry.claimed_ms + self.lease_ms)

    def outcome(self, key: str, owner: str, fingerprint: str, now_ms: int) -> Decision:
        """After this request's claim (by `owner`) was folded: did it win?"""
        entry = self._entries.get(key)
        if entry is not None and entry.state == CLAIMED and entry.owner == owner:
            return Decision(Verdict.WON, entry)
        decision = self.check(key, fingerprint, now_ms)
        # Lost to a claim that has lapsed or was released meanwhile: claim again (NEW).
        return decision

    def prune(self, now_ms: int) -> int:
        """Forget keys whose delivery is older than the window (and lapsed claims as old); how many."""
        horizon = now_ms - self.window_ms - self.lease_ms
        stale = [key for key, entry in self._entries.items()
                 if max(entry.claimed_ms, entry.accepted_ms) < horizon]
        for key in stale:
            del self._entries[key]
        return len(stale)
