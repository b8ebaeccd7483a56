"""Folding the registry topic into state: pure, compaction-proof, tolerant of garbage."""

from __future__ import annotations

import json

import pytest

from app.registry.compat import parse_schema
from app.registry.state import (
    Record,
    Reference,
    RegistryState,
    SubjectVersion,
    config_record,
    max_id_record,
    mode_record,
    schema_record,
    schema_tombstone,
)

from .compat_cases import BASE, HOST, record

OTHER = record(HOST, name="Other")


def sv(subject: str, version: int, schema_id: int, schema: str = BASE, deleted: bool = False) -> SubjectVersion:
    return SubjectVersion(subject=subject, version=version, schema_id=schema_id, schema=schema, deleted=deleted)


def fold(records: list[Record]) -> RegistryState:
    state = RegistryState()
    state.apply_all(records)
    return state


def compact(records: list[Record], *, drop_tombstones: bool) -> list[Record]:
    """What log compaction keeps: the last record per key (tombstones eventually go too)."""
    last: dict[bytes, Record] = {}
    for key, value in records:
        last.pop(key, None)
        last[key] = (key, value)
    return [r for r in last.values() if r[1] is not None or not drop_tombstones]


def snapshot(state: RegistryState) -> dict[str, object]:
    subjects = state.subjects(deleted=True)
    return {
        "versions": {s: state.versions(s, deleted=True) for s in subjects},
        "live": state.subjects(),
        "ids": {i: state.schema_text(i) for i in range(1, state.max_id + 1)},
        "levels": {s: state.level(s) for s in [None, *subjects]},
        "configs": {s: state.config(s) for s in [None, *subjects]},
        "modes": {s: state.mode(s) for s in [None, *subjects]},
        "referrers": {(s, v.version): state.referrers(s, v.version) for s in subjects
                      for v in state.versions(s, deleted=True)},
        "by_id": {i: state.by_id(i) for i in range(1, state.max_id + 1)},
        "max_id": state.max_id,
    }


HISTORY: list[Record] = [
    max_id_record(1), schema_record(sv("a", 1, 1)),
    max_id_record(2), schema_record(sv("a", 2, 2, OTHER)),
    schema_record(sv("b", 1, 1)),
    config_record(None, "FULL"), config_record("a", "NONE"),
    max_id_record(3), schema_record(sv("c", 1, 3, record(HOST, name="Third"))),
    schema_record(sv("c", 1, 3, record(HOST, name="Third"), deleted=True)),
    schema_tombstone("c", 1),
    schema_record(sv("b", 1, 1, deleted=True)),
    config_record("a", None),
    mode_record(None, "READONLY"), mode_record("a", "IMPORT"), mode_record(None, None),
    config_record("b", {"compatibilityLevel": "FULL", "normalize": True, "alias": "a"}),
    max_id_record(4),
    schema_record(SubjectVersion("r", 1, 4, record(HOST, {"name": "x", "type": "t.Other"}, name="Ref"),
                                 references=(Reference("t.Other", "a", 2),), metadata={"properties": {"o": "p"}})),
]


def test_fold__subjects_versions_ids_and_configs() -> None:
    state = fold(HISTORY)
    assert state.subjects() == ["a", "r"]
    assert state.subjects(deleted=True) == ["a", "b", "r"]
    assert [v.version for v in state.versions("a")] == [1, 2]
    assert state.versions("b") == [] and state.versions("b", deleted=True)[0].deleted
    assert state.schema_text(1) == BASE and state.schema_text(2) == OTHER
    assert state.schema_text(3) is None  # permanently deleted everywhere
    assert state.level(None) == "FULL" and state.level("a") is None
    assert state.mode(None) is None and state.mode("a") == "IMPORT"
    assert state.config("b") == {"compatibilityLevel": "FULL", "normalize": True, "alias": "a"}
    assert [(r.subject, r.version) for r in state.referrers("a", 2)] == [("r", 1)]
    by_id = state.by_id(4)
    assert by_id is not None and by_id.metadata == {"properties": {"o": "p"}}
    assert [(u.subject, u.version) for u in state.uses(1, deleted=True)] == [("a", 1), ("b", 1)]
    assert [(u.subject, u.version) for u in state.uses(1)] == [("a", 1)]


def test_fold__max_id_survives_permanent_delete_of_the_highest_id() -> None:
    state = fold(HISTORY[:-2])
    assert state.max_id == 3


def test_fold__records_written_before_references_modes_and_config_fields_still_fold() -> None:
    # The exact bytes an older Vigil wrote (no references/metadata keys, level-only configs).
    old = [(b'{"keytype":"MAX_ID"}', b'{"id":1}'),
           (b'{"keytype":"SCHEMA","subject":"a","version":1}',
            json.dumps({"deleted": False, "id": 1, "schema": BASE, "schemaType": "AVRO", "subject": "a",
                        "version": 1}, sort_keys=True, separators=(",", ":")).encode()),
           (b'{"keytype":"CONFIG","subject":null}', b'{"compatibilityLevel":"FULL"}')]
    state = fold(old)
    assert state.skipped == 0 and state.level(None) == "FULL" and state.config(None) == {"compatibilityLevel": "FULL"}
    assert state.versions("a") == [sv("a", 1, 1)]
    # ...and a record written now for the same facts has the same bytes, so compaction matches them.
    assert schema_record(sv("a", 1, 1)) == old[1]
    assert config_record(None, "FULL") == old[2]


def test_fold__a_soft_deleted_referrer_no_longer_holds_what_it_references() -> None:
    referrer = SubjectVersion("r", 1, 2, "{}", references=(Reference("t.Reading", "a", 1),))
    state = fold([schema_record(sv("a", 1, 1)), schema_record(referrer)])
    assert [r.subject for r in state.referrers("a", 1)] == ["r"]
    state.apply(*schema_record(SubjectVersion("r", 1, 2, "{}", deleted=True, references=referrer.references)))
    assert state.referrers("a", 1) == []


@pytest.mark.parametrize("drop_tombstones", [False, True])
def test_fold__compacted_log_gives_the_same_state(drop_tombstones: bool) -> None:
    assert snapshot(fold(compact(HISTORY, drop_tombstones=drop_tombstones))) == snapshot(fold(HISTORY))


def test_fold__same_schema_in_two_subjects_shares_the_id_until_both_are_gone() -> None:
    state = fold([schema_record(sv("a", 1, 7)), schema_record(sv("b", 1, 7))])
    identity = state.identity(7)
    assert identity is not None and state.id_for(identity) == 7
    state.apply(*schema_tombstone("a", 1))
    assert state.schema_text(7) == BASE
    state.apply(*schema_tombstone("b", 1))
    assert state.schema_text(7) is None and state.id_for(identity) is None


def test_fold__canonical_lookup_ignores_whitespace() -> None:
    spaced = json.dumps(json.loads(BASE), indent=2)
    state = fold([schema_record(sv("a", 1, 1, spaced))])
    assert state.id_for(("AVRO", parse_schema(BASE).canonical, ())) == 1


def test_fold__two_ids_for_one_schema_resolve_to_the_lowest_everywhere() -> None:
    forward = fold([schema_record(sv("a", 1, 5)), schema_record(sv("b", 1, 4))])
    backward = fold([schema_record(sv("b", 1, 4)), schema_record(sv("a", 1, 5))])
    identity = forward.identity(5)
    assert identity is not None
    assert forward.id_for(identity) == backward.id_for(identity) == 4
    forward.apply(*schema_tombstone("b", 1))
    assert forward.id_for(identity) == 5


@pytest.mark.parametrize(("key", "value"), [
    (None, b"{}"),
    (b"not json", b"{}"),
    (b'{"keytype": "WHATEVER"}', b"{}"),
    (b'["a list"]', b"{}"),
    (b'{"keytype": "SCHEMA", "subject": "a", "version": 1}', b"not json"),
    (b'{"keytype": "SCHEMA", "subject": "a", "version": 1}', b'{"no": "id"}'),
    (b'{"keytype": "SCHEMA", "subject": "a", "version": "one"}', b'{"id": 1, "schema": "\\"int\\""}'),
    (b'{"keytype": "MAX_ID"}', b'{"id": "many"}'),
    (b'{"keytype": "CONFIG", "subject": null}', b'[]'),
    (b'{"keytype": "CONFIG", "subject": "a"}', b'{"compatibilityLevel": "SIDEWAYS"}'),
    (b'{"keytype": "MODE", "subject": "a"}', b'{"mode": "SOMETIMES"}'),
    (b'{"keytype": "SCHEMA", "subject": "a", "version": 1}', b'{"id": 1, "schema": "x", "references": [{}]}'),
    (b'{"keytype": "SCHEMA", "subject": "a", "version": 1}', b'{"id": 1, "schema": "x", "metadata": []}'),
])
def test_fold__garbage_is_skipped_and_counted_not_fatal(key: bytes | None, value: bytes) -> None:
    state = fold(HISTORY)
    before = snapshot(state)
    assert state.apply(key, value) is False
    assert state.skipped == 1
    assert snapshot(state) == before


def test_fold__unparseable_stored_schema_is_still_served_by_id() -> None:
    state = fold([schema_record(sv("x", 1, 9, "this is not avro"))])
    assert state.schema_text(9) == "this is not avro"
    assert state.versions("x")[0].schema_id == 9


def test_records__keys_are_stable_bytes_so_compaction_can_match_them() -> None:
    assert schema_record(sv("a", 1, 1))[0] == schema_tombstone("a", 1)[0]
    assert config_record("a", "FULL")[0] == config_record("a", None)[0]
    assert config_record(None, "FULL")[0] != config_record("a", "FULL")[0]
    assert max_id_record(1)[0] == max_id_record(2)[0]
    assert mode_record("a", "IMPORT")[0] == mode_record("a", None)[0] != config_record("a", None)[0]
