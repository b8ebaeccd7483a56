"""Registry semantics (Confluent's) as pure plans and queries, run on the in-memory store."""

from __future__ import annotations

import json
from functools import partial

import pytest

from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.registration import plan_register
from app.registry.schema_request import LATEST, SchemaRequest, parse_version
from app.registry.store import InMemorySchemaStore

from .compat_cases import BASE, HOST, VALUE, record

V2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
BREAKING = record(HOST, {"name": "value", "type": "string"})


def req(text: str, **fields: object) -> SchemaRequest:
    return SchemaRequest.from_body({"schema": text, **fields})


@pytest.fixture
def store() -> InMemorySchemaStore:
    return InMemorySchemaStore()


def register(store: InMemorySchemaStore, subject: str, text: str) -> tuple[int, int]:
    sv = store.write(plan_register(subject, req(text)))
    return sv.schema_id, sv.version


def api_error(fn, *args, **kwargs) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        fn(*args, **kwargs)
    return err.value


def test_register__new_versions_and_ids() -> None:
    store = InMemorySchemaStore()
    assert register(store, "a", BASE) == (1, 1)
    assert register(store, "a", V2) == (2, 2)
    assert store.read(partial(ops.list_versions, subject="a")) == [1, 2]


def test_register__same_schema_twice_returns_existing_and_writes_nothing(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    before = len(store.records)
    assert register(store, "a", json.dumps(json.loads(BASE), indent=3)) == (1, 1)
    assert len(store.records) == before


def test_register__same_schema_in_another_subject_reuses_the_id(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    register(store, "a", V2)
    assert register(store, "b", json.dumps(json.loads(BASE), indent=1)) == (1, 1)
    # One id, one text: the second subject serves the first registration's bytes.
    assert store.read(partial(ops.get_version, subject="b", version=1)).schema == BASE


def test_register__incompatible_is_409_with_the_checkers_reason(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    err = api_error(register, store, "a", BREAKING)
    assert (err.status, err.error_code) == (409, 409)
    assert "'value'" in err.message and "BACKWARD" in err.message


def test_register__level_none_accepts_anything(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_set_config("a", {"compatibility": "none"}))
    assert register(store, "a", BREAKING) == (2, 2)


def test_register__global_level_applies_when_subject_has_none(store: InMemorySchemaStore) -> None:
    register(store, "a", record(HOST))
    store.write(ops.plan_set_config(None, {"compatibility": "FORWARD"}))
    # Adding a field without a default is forward- but not backward-compatible.
    assert register(store, "a", record(HOST, {"name": "unit", "type": "string"})) == (2, 2)


def test_register__versions_keep_counting_after_soft_delete(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    register(store, "a", V2)
    assert store.write(ops.plan_delete_subject("a")) == [1, 2]
    # Soft-deleted versions are not checked, and the number goes on from the highest.
    assert register(store, "a", BREAKING) == (3, 3)
    assert store.read(partial(ops.list_versions, subject="a")) == [3]
    assert store.read(partial(ops.list_versions, subject="a", deleted=True)) == [1, 2, 3]
    assert store.read(partial(ops.list_versions, subject="a", deleted_only=True)) == [1, 2]


def test_delete__permanent_needs_soft_first_and_ids_are_never_reused(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    assert api_error(store.write, ops.plan_delete_subject("a", permanent=True)).error_code == 40405
    store.write(ops.plan_delete_subject("a"))
    assert api_error(store.write, ops.plan_delete_subject("a")).error_code == 40404
    assert store.write(ops.plan_delete_subject("a", permanent=True)) == [1]
    assert api_error(store.write, ops.plan_delete_subject("a")).error_code == 40401
    assert api_error(store.read, partial(ops.schema_by_id, schema_id=1)).error_code == 40403
    assert register(store, "a", V2) == (2, 1)  # id 1 stays retired


def test_delete_version__soft_then_permanent(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    register(store, "a", V2)
    assert api_error(store.write, ops.plan_delete_version("a", 2, permanent=True)).error_code == 40407
    assert store.write(ops.plan_delete_version("a", LATEST)) == 2
    assert store.read(partial(ops.get_version, subject="a", version=LATEST)).version == 1
    assert api_error(store.read, partial(ops.get_version, subject="a", version=2)).error_code == 40402
    assert store.read(partial(ops.get_version, subject="a", version=2, deleted=True)).deleted
    assert store.write(ops.plan_delete_version("a", 2, permanent=True)) == 2
    assert api_error(store.write, ops.plan_delete_version("a", 2)).error_code == 40402


def test_delete_subject__soft_keeps_its_config_and_mode_permanent_takes_them(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_set_config("a", {"compatibility": "FULL"}))
    store.write(ops.plan_set_mode("a", {"mode": "READWRITE"}))
    store.write(ops.plan_delete_subject("a"))
    assert store.read(partial(ops.get_config, subject="a")) == {"compatibilityLevel": "FULL"}
    assert store.read(partial(ops.get_mode, subject="a")) == "READWRITE"
    store.write(ops.plan_delete_subject("a", permanent=True))
    assert api_error(store.read, partial(ops.get_config, subject="a")).error_code == 40408
    assert api_error(store.read, partial(ops.get_mode, subject="a")).error_code == 40409


def test_delete_version__permanently_deleting_the_last_one_takes_config_along(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_set_config("a", {"compatibility": "NONE"}))
    store.write(ops.plan_delete_version("a", 1))
    assert store.read(partial(ops.get_config, subject="a")) == {"compatibilityLevel": "NONE"}
    store.write(ops.plan_delete_version("a", 1, permanent=True))
    assert api_error(store.read, partial(ops.get_config, subject="a")).error_code == 40408


def test_register__re_registering_a_soft_deleted_schema_drops_the_old_version_for_good(
        store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_delete_version("a", 1))
    assert register(store, "a", BASE) == (1, 2)
    assert store.read(partial(ops.list_versions, subject="a", deleted=True)) == [2]


def test_lookup__finds_version_by_meaning_not_bytes(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    register(store, "a", V2)
    found = store.read(partial(ops.lookup, subject="a", request=req(json.dumps(json.loads(BASE), indent=2))))
    assert (found.version, found.schema_id) == (1, 1)
    assert api_error(store.read, partial(ops.lookup, subject="a", request=req(BREAKING))).error_code == 40403
    assert api_error(store.read, partial(ops.lookup, subject="zz", request=req(BASE))).error_code == 40401


def test_lookup__soft_deleted_only_when_asked(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_delete_subject("a"))
    assert api_error(store.read, partial(ops.lookup, subject="a", request=req(BASE))).error_code == 40401
    assert store.read(partial(ops.lookup, subject="a", request=req(BASE), deleted=True)).deleted


def test_compatibility__latest_checks_only_the_latest_even_when_transitive(store: InMemorySchemaStore) -> None:
    assert store.read(partial(ops.check_compatibility, subject="new", version=LATEST,
                              request=req(BASE))) == (True, [])
    register(store, "a", record(HOST))
    register(store, "a", record(HOST, {"name": "unit", "type": "string", "default": ""}))
    store.write(ops.plan_set_config("a", {"compatibility": "BACKWARD_TRANSITIVE"}))
    no_default = req(record(HOST, {"name": "unit", "type": "string"}))
    # Version 2 gave "unit" a default, so data written with it always has the field: compatible.
    assert store.read(partial(ops.check_compatibility, subject="a", version=LATEST, request=no_default)) == (True, [])
    # Against all versions (no version in the path), the transitive level also checks version 1.
    ok, messages = store.read(partial(ops.check_compatibility, subject="a", version=None, request=no_default))
    assert not ok and "version 1" in messages[0]
    assert store.read(partial(ops.check_compatibility, subject="a", version=2, request=no_default)) == (True, [])
    assert api_error(store.read, partial(ops.check_compatibility, subject="a", version=9,
                                         request=no_default)).error_code == 40402
    assert api_error(store.read, partial(ops.check_compatibility, subject="zz", version=1,
                                         request=no_default)).error_code == 40401


def test_compatibility__all_versions_under_a_non_transitive_level_checks_the_latest(
        store: InMemorySchemaStore) -> None:
    register(store, "a", record(HOST))
    register(store, "a", record(HOST, {"name": "unit", "type": "string", "default": ""}))
    no_default = req(record(HOST, {"name": "unit", "type": "string"}))
    assert store.read(partial(ops.check_compatibility, subject="a", version=None, request=no_default)) == (True, [])


def test_config__subject_global_default_and_delete(store: InMemorySchemaStore) -> None:
    level = {"compatibilityLevel": "BACKWARD"}
    assert store.read(partial(ops.get_config, subject=None)) == level
    assert store.read(partial(ops.get_config, subject="a", default_to_global=True)) == level
    assert store.write(ops.plan_set_config(None, {"compatibility": "full"})) == {"compatibility": "FULL"}
    assert store.write(ops.plan_set_config("a", {"compatibilityLevel": "NONE"})) == {"compatibility": "NONE"}
    assert store.read(partial(ops.get_config, subject="a")) == {"compatibilityLevel": "NONE"}
    assert store.write(ops.plan_delete_config("a")) == {"compatibilityLevel": "NONE"}
    assert store.read(partial(ops.get_config, subject="a", default_to_global=True)) == {"compatibilityLevel": "FULL"}
    assert store.write(ops.plan_delete_config(None)) == {"compatibilityLevel": "FULL"}
    assert store.read(partial(ops.get_config, subject=None)) == level
    assert api_error(store.write, ops.plan_delete_config("a")).error_code == 40401


def test_config__fields_are_stored_kept_when_left_out_and_cleared_by_null(store: InMemorySchemaStore) -> None:
    meta = {"properties": {"owner": "team-a"}}
    answer = store.write(ops.plan_set_config("a", {"compatibility": "FULL", "normalize": True, "alias": "b",
                                                   "defaultMetadata": meta, "compatibilityGroup": "app.v"}))
    assert answer == {"compatibility": "FULL", "normalize": True, "alias": "b", "defaultMetadata": meta,
                      "compatibilityGroup": "app.v"}
    store.write(ops.plan_set_config("a", {"validateFields": False, "alias": None}))
    assert store.read(partial(ops.get_config, subject="a")) == {
        "compatibilityLevel": "FULL", "normalize": True, "defaultMetadata": meta, "compatibilityGroup": "app.v",
        "validateFields": False}
    store.write(ops.plan_set_config(None, {"overrideRuleSet": {"domainRules": [{"name": "r", "kind": "CONDITION"}]}}))
    merged = store.read(partial(ops.get_config, subject="a", default_to_global=True))
    assert merged["overrideRuleSet"]["domainRules"][0]["name"] == "r" and merged["compatibilityLevel"] == "FULL"


@pytest.mark.parametrize(("body", "code"), [({"normalize": "yes"}, 42203), ({"alias": 3}, 42203),
                                            ({"defaultMetadata": {"properties": {"a": 1}}}, 42203),
                                            ({"defaultRuleSet": {"domainRules": [{"kind": "X"}]}}, 42210)])
def test_config__bad_fields_are_refused_naming_the_field(body: dict[str, object], code: int) -> None:
    err = api_error(ops.plan_set_config, "a", body)
    assert err.error_code == code and next(iter(body)) in err.message


@pytest.mark.parametrize("body", [{"compatibility": "SIDEWAYS"}, {}, {"compatibility": None}, ["FULL"], "FULL"])
def test_config__invalid_level_is_42203(body: object) -> None:
    err = api_error(ops.plan_set_config, "a", body)
    assert (err.status, err.error_code) == (422, 42203)
    assert "BACKWARD" in err.message


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("latest", LATEST), ("-1", LATEST),
                                               ("LATEST", LATEST), (str(2**31 - 1), 2**31 - 1)])
def test_parse_version__valid(raw: str, expected: object) -> None:
    assert parse_version(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-2", "one", "1.5", str(2**31), ""])
def test_parse_version__invalid_is_42202(raw: str) -> None:
    assert api_error(parse_version, raw).error_code == 42202


@pytest.mark.parametrize(("body", "reason"), [
    ({"schema": '{"type": "nosuch"}'}, "nosuch"),
    ({"schema": "{not json"}, "not JSON"),
    ({"schema": 42}, "string"),
    ({}, "no \"schema\" field"),
    ([], "JSON object"),
    ({"schema": BASE, "schemaType": "PROTOBUF"}, "PROTOBUF"),
    ({"schema": BASE, "schemaType": "JSON"}, "AVRO"),
    ({"schema": BASE, "references": [{"name": "x", "version": 1}]}, "references[0]"),
    ({"schema": BASE, "references": [{"name": "x", "subject": "y", "version": 0}]}, "version"),
    ({"schema": BASE, "references": "x"}, "references"),
    ({"schema": BASE, "metadata": {"tags": {"f": "PII"}}}, "tags"),
    ({"schema": BASE, "id": "seven"}, '"id"'),
])
def test_schema_request__invalid_is_42201_with_the_reason(body: object, reason: str) -> None:
    err = api_error(SchemaRequest.from_body, body)
    assert (err.status, err.error_code) == (422, 42201)
    assert reason in err.message


def test_schema_request__avro_type_and_empty_references_are_fine() -> None:
    assert SchemaRequest.from_body({"schema": BASE, "schemaType": "AVRO", "references": []}).schema_type == "AVRO"


def test_subjects__prefix_and_deleted(store: InMemorySchemaStore) -> None:
    register(store, "app.one", BASE)
    register(store, "app.two", BASE)
    register(store, "other", BASE)
    store.write(ops.plan_delete_subject("app.two"))
    assert store.read(partial(ops.list_subjects)) == ["app.one", "other"]
    assert store.read(partial(ops.list_subjects, prefix="app.", deleted=True)) == ["app.one", "app.two"]
    assert store.read(partial(ops.list_subjects, deleted_only=True)) == ["app.two"]
