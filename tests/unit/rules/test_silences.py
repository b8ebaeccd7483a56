"""Silences: record format, validation and which actions they cover."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.rules.silences import ActionFacts, Silence, SilenceError, SilenceSet, decode_silence, encode_silence

from .conftest import event


def silence(match: dict[str, str] | None = None, *, rule: str | None = None, until_ms: int = 1000,
            id: str = "s1") -> Silence:
    return Silence(id=id, match=match if match is not None else {"subject": "web1"}, rule=rule,
                   until_ms=until_ms, reason="maintenance", created_ms=0)


def facts(subject: str = "web1", **event_fields: Any) -> ActionFacts:
    return ActionFacts(rule="disk-full", action_type="shell", target=f"{subject}-agent", group_key=f"{subject}/disk",
                       event=event(subject, "disk", 0, **event_fields), event_type="vigil.Event")


@pytest.mark.parametrize(("match", "rule", "covered"), [
    ({"subject": "web1"}, None, True),
    ({"subject": "web*"}, None, True),
    ({"subject": "db*"}, None, False),
    ({"subject": "web1", "name": "disk"}, None, True),
    ({"subject": "web1", "name": "load"}, None, False),  # every entry must match
    ({"tags.env": "prod"}, None, True),
    ({"tags.owner": "*"}, None, False),  # a missing field matches nothing, not even *
    ({"target": "web1-*"}, None, True),
    ({"action": "print"}, None, False),
    ({"group": "web1/*"}, None, True),
    ({}, "disk-*", True),
    ({"subject": "web1"}, "load-*", False),
])
def test_covers(match: dict[str, str], rule: str | None, covered: bool) -> None:
    assert silence(match, rule=rule).covers(facts(tags={"env": "prod"}), now_ms=0) is covered


def test_covers_only_until_it_ends() -> None:
    s = silence(until_ms=1000)
    assert s.covers(facts(), 999) and not s.covers(facts(), 1000)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"match": {}}, "needs --match"),
    ({"match": {"host": "web1"}}, "unknown field `host`"),
    ({"match": {"subject": 1}}, "must be strings"),
])
def test_invalid_silence__error_says_what_to_write(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SilenceError, match=message):
        Silence(id="s", rule=None, until_ms=1, reason="", created_ms=0, **kwargs)


def test_record_round_trip() -> None:
    s = silence({"tags.env": "prod"}, rule="disk-*")
    assert json.loads(encode_silence(s)) == {"id": "s1", "match": {"tags.env": "prod"}, "rule": "disk-*",
                                             "until_ms": 1000, "reason": "maintenance", "created_ms": 0}
    assert decode_silence(encode_silence(s)) == s


@pytest.mark.parametrize(("value", "message"), [
    (b"not json", "not JSON"),
    (b"[]", "JSON object"),
    (b'{"id": "s"}', "lacks 'until_ms'"),
    (b'{"id": "s", "until_ms": "soon", "match": {"subject": "a"}}', "until_ms must be an integer"),
])
def test_decode_invalid_record(value: bytes, message: str) -> None:
    with pytest.raises(SilenceError, match=message):
        decode_silence(value)


def test_set__applies_records_and_tombstones__ignores_invalid_records() -> None:
    silences = SilenceSet()
    silences.apply(b"s1", encode_silence(silence(id="s1")))
    silences.apply(b"s2", encode_silence(silence({"subject": "db1"}, id="s2", until_ms=5000)))
    silences.apply(b"bad", b"{")
    assert [s.id for s in silences.all()] == ["s1", "s2"]
    assert silences.covering(facts(), 0).id == "s1"
    assert [s.id for s in silences.active(2000)] == ["s2"]
    silences.apply(b"s1", None)
    assert silences.covering(facts(), 0) is None and len(silences) == 1
