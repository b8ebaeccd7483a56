"""Delivery keys and the fold of the delivery ledger (app.bridges.deliveries), and the digest of an
Alertmanager notification (app.bridges.parsers.alertmanager): pure, time passed in."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from app.bridges.deliveries import (
    ACCEPTED,
    CLAIMED,
    RELEASED,
    DeliveryIndex,
    LedgerRecord,
    Verdict,
    body_fingerprint,
    header_delivery_key,
)
from app.bridges.errors import ParseError
from app.bridges.parsers.alertmanager import alertmanager_group_state

from .support import data_json

T0 = 1_700_000_000_000
WINDOW_MS = 86_400_000
LEASE_MS = 60_000


def _index() -> DeliveryIndex:
    return DeliveryIndex(window_ms=WINDOW_MS, lease_ms=LEASE_MS)


def _rec(state: str, owner: str, at_ms: int, key: str = "k", accepted: int = 0, fingerprint: str = "") -> LedgerRecord:
    return LedgerRecord(key, state, owner, at_ms, accepted, fingerprint)


# -- keys ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["8e3c-4f", '"8e3c-4f"', "  8e3c-4f  "])
def test_idempotency_key__bare_or_structured_field_string_name_the_same_key(value: str) -> None:
    key = header_delivery_key("events", "Idempotency-Key", value, body=b"{}")
    assert key is not None
    assert (key.key, key.fingerprint) == ("events/idempotency-key/8e3c-4f", body_fingerprint(b"{}"))


def test_no_header__no_key_and_keys_are_per_endpoint() -> None:
    assert header_delivery_key("events", "Idempotency-Key", None) is None
    a = header_delivery_key("events", "Idempotency-Key", "x")
    b = header_delivery_key("nagios", "Idempotency-Key", "x")
    assert a is not None and b is not None and a.key != b.key


@pytest.mark.parametrize(("value", "words"), [
    ("", "is empty"), ('""', "is empty"), ("x" * 256, "at most 255"), ("caf\u00e9", "printable ASCII"),
    ("a\tb", "printable ASCII"),
])
def test_unusable_key__is_an_error_naming_the_header(value: str, words: str) -> None:
    with pytest.raises(ParseError, match=words) as caught:
        header_delivery_key("events", "Idempotency-Key", value)
    assert caught.value.field == "Idempotency-Key"


def test_ledger_record__round_trips_and_refuses_what_it_is_not() -> None:
    record = _rec(ACCEPTED, "o1", T0, accepted=3, fingerprint="ab")
    assert LedgerRecord.from_json(record.to_json()) == record
    assert LedgerRecord.from_json(_rec(CLAIMED, "o1", T0).to_json()) == _rec(CLAIMED, "o1", T0)
    for bad in [b"[]", b'{"state": "won"}', b'{"state": "claimed", "key": "k", "owner": "o", "at_ms": "now"}',
                b'{"state": "accepted", "key": "k", "owner": "o", "at_ms": 1, "accepted": "3"}']:
        with pytest.raises(ValueError):
            LedgerRecord.from_json(bad)


# -- the fold ---------------------------------------------------------------------------------------------

def test_first_live_claim_wins__a_later_one_loses_and_waits() -> None:
    index = _index()
    index.apply(_rec(CLAIMED, "a", T0))
    index.apply(_rec(CLAIMED, "b", T0 + 5))
    assert index.outcome("k", "a", "", T0 + 10).verdict == Verdict.WON
    busy = index.outcome("k", "b", "", T0 + 10)
    assert (busy.verdict, busy.busy_until_ms) == (Verdict.BUSY, T0 + LEASE_MS)


def test_accepted__is_a_duplicate_with_its_count_until_the_window_passes() -> None:
    index = _index()
    index.apply(_rec(CLAIMED, "a", T0))
    index.apply(_rec(ACCEPTED, "a", T0 + 20, accepted=3))
    decision = index.check("k", "", T0 + WINDOW_MS)
    assert decision.verdict == Verdict.DUPLICATE and decision.entry is not None and decision.entry.accepted == 3
    assert index.check("k", "", T0 + 20 + WINDOW_MS).verdict == Verdict.NEW
    index.apply(_rec(CLAIMED, "b", T0 + 20 + WINDOW_MS))  # a new delivery under the old key, after the window
    assert index.outcome("k", "b", "", T0 + 30 + WINDOW_MS).verdict == Verdict.WON


def test_released__lets_the_next_claim_win() -> None:
    index = _index()
    index.apply(_rec(CLAIMED, "a", T0))
    index.apply(_rec(CLAIMED, "b", T0 + 1))  # loses: a's claim is live
    index.apply(_rec(RELEASED, "b", T0 + 2))  # a loser's release changes nothing
    assert index.check("k", "", T0 + 3).verdict == Verdict.BUSY
    index.apply(_rec(RELEASED, "a", T0 + 4))
    assert index.check("k", "", T0 + 5).verdict == Verdict.NEW
    index.apply(_rec(CLAIMED, "b", T0 + 6))
    assert index.outcome("k", "b", "", T0 + 7).verdict == Verdict.WON


def test_a_claim_whose_request_died__lapses_after_the_lease() -> None:
    index = _index()
    index.apply(_rec(CLAIMED, "dead", T0))
    assert index.check("k", "", T0 + LEASE_MS - 1).verdict == Verdict.BUSY
    assert index.check("k", "", T0 + LEASE_MS).verdict == Verdict.NEW
    index.apply(_rec(CLAIMED, "retry", T0 + LEASE_MS))
    assert index.outcome("k", "retry", "", T0 + LEASE_MS).verdict == Verdict.WON


def test_a_key_reused_for_another_body__is_a_conflict() -> None:
    index = _index()
    index.apply(_rec(CLAIMED, "a", T0, fingerprint="f1"))
    assert index.check("k", "f2", T0 + 1).verdict == Verdict.CONFLICT
    index.apply(_rec(ACCEPTED, "a", T0 + 2, accepted=1, fingerprint="f1"))
    assert index.check("k", "f2", T0 + 3).verdict == Verdict.CONFLICT
    assert index.check("k", "f1", T0 + 3).verdict == Verdict.DUPLICATE


def test_every_replica_that_read_the_same_records__decides_the_same() -> None:
    """Two replicas' claims, accept and release in every order they can appear in the log: whatever
    the order, a replica folding it names one winner, and it is the first live claim in the log."""
    records = [_rec(CLAIMED, "a", T0), _rec(CLAIMED, "b", T0 + 1), _rec(CLAIMED, "c", T0 + LEASE_MS + 5)]
    for order in itertools.permutations(records):
        one, other = _index(), _index()
        for record in order:
            one.apply(record)
            other.apply(record)
        winners = [r.owner for r in records if one.outcome("k", r.owner, "", T0 + LEASE_MS + 10).verdict == Verdict.WON]
        assert winners == [r.owner for r in records if other.outcome("k", r.owner, "", T0 + LEASE_MS + 10).verdict
                           == Verdict.WON]
        assert len(winners) == 1


def test_prune__forgets_deliveries_older_than_the_window() -> None:
    index = _index()
    index.apply(_rec(ACCEPTED, "a", T0, key="old", accepted=1))
    index.apply(_rec(ACCEPTED, "b", T0 + WINDOW_MS, key="new", accepted=1))
    assert index.prune(T0 + WINDOW_MS + LEASE_MS + 1) == 1
    assert index.get("old") is None and index.get("new") is not None


# -- Alertmanager ------------------------------------------------------------------------------------------

def _group() -> dict[str, Any]:
    payload: dict[str, Any] = data_json("alertmanager/v4_group.json")
    return payload


def _state(payload: Any) -> str | None:
    return alertmanager_group_state(json.dumps(payload).encode())


def test_alertmanager__a_resend_of_an_unchanged_group_has_the_same_digest() -> None:
    first = _group()
    resend = copy.deepcopy(first)
    resend["alerts"].reverse()  # any order
    for alert in resend["alerts"]:  # annotations may quote a current value: not part of the identity
        alert["annotations"] = {**alert.get("annotations", {}), "description": "load is now 9.99"}
    assert _state(first) is not None
    assert _state(resend) == _state(first)


def test_alertmanager__a_changed_group_has_another_digest() -> None:
    first = _group()
    firing = next(i for i, alert in enumerate(first["alerts"]) if alert.get("status") == "firing")
    resolved = copy.deepcopy(first)
    resolved["alerts"][firing]["status"] = "resolved"
    resolved["alerts"][firing]["endsAt"] = "2024-03-19T11:00:00Z"
    refired = copy.deepcopy(first)
    refired["alerts"][firing]["startsAt"] = "2024-03-19T12:00:00Z"
    grown = copy.deepcopy(first)
    grown["alerts"].append({**first["alerts"][firing], "fingerprint": "ffff", "labels": {"alertname": "New"}})
    other_group = {**first, "groupKey": "{}:{alertname=\"Other\"}"}
    digests = {_state(p) for p in (first, resolved, refired, grown, other_group)}
    assert len(digests) == 5


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"alerts": {}}'])
def test_alertmanager__no_digest_for_what_is_not_a_webhook_payload(body: bytes) -> None:
    assert alertmanager_group_state(body) is None
