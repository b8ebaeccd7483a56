"""Registry semantics (Confluent's) as pure plans and queries, run on the in-memory store."""

from __future__ import annotations

import json
from functools import partial

import pytest

from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.store import InMemorySchemaStore

from .compat_cases import BASE, HOST, VALUE, record

V2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
BREAKING = record(HOST, {"name": "value", "type": "string"})


def req(text: str) -> ops.SchemaRequest:
    return ops.SchemaRequest.from_body({"schema": text})


@pytest.fixture
def store() -> InMemorySchemaStore:
    return InMemorySchemaStore()


def register(store: InMemorySchemaStore, subject: str, text: str) -> tuple[int, int]:
    sv = store.write(ops.plan_register(subject, req(text)))
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
    assert store.write(ops.plan_delete_version("a", ops.LATEST)) == 2
    assert store.read(partial(ops.get_version, subject="a", version=ops.LATEST)).version == 1
    assert api_error(store.read, partial(ops.get_version, subject="a", version=2)).error_code == 40402
    assert store.read(partial(ops.get_version, subject="a", version=2, deleted=True)).deleted
    assert store.write(ops.plan_delete_version("a", 2, permanent=True)) == 2
    assert api_error(store.write, ops.plan_delete_version("a", 2)).error_code == 40402


def test_delete_subject__takes_its_level_along(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    store.write(ops.plan_set_config("a", {"compatibility": "FULL"}))
    store.write(ops.plan_delete_subject("a"))
    assert api_error(store.read, partial(ops.get_config, subject="a")).error_code == 40408


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


def test_compatibility__latest_uses_level_specific_version_checks_only_that(store: InMemorySchemaStore) -> None:
    assert store.read(partial(ops.check_compatibility, subject="new", version=ops.LATEST,
                              request=req(BASE))) == (True, [])
    register(store, "a", record(HOST))
    register(store, "a", record(HOST, {"name": "unit", "type": "string", "default": ""}))
    store.write(ops.plan_set_config("a", {"compatibility": "BACKWARD_TRANSITIVE"}))
    no_default = req(record(HOST, {"name": "unit", "type": "string"}))
    ok, messages = store.read(partial(ops.check_compatibility, subject="a", version=ops.LATEST, request=no_default))
    assert not ok and "version 1" in messages[0]
    assert store.read(partial(ops.check_compatibility, subject="a", version=2, request=no_default)) == (True, [])
    assert api_error(store.read, partial(ops.check_compatibility, subject="a", version=9,
                                         request=no_default)).error_code == 40402
    assert api_error(store.read, partial(ops.check_compatibility, subject="zz", version=1,
                                         request=no_default)).error_code == 40401


def test_config__subject_global_default_and_delete(store: InMemorySchemaStore) -> None:
    assert store.read(partial(ops.get_config, subject=None)) == "BACKWARD"
    assert store.read(partial(ops.get_config, subject="a", default_to_global=True)) == "BACKWARD"
    assert store.write(ops.plan_set_config(None, {"compatibility": "full"})) == "FULL"
    assert store.write(ops.plan_set_config("a", {"compatibilityLevel": "NONE"})) == "NONE"
    assert store.read(partial(ops.get_config, subject="a")) == "NONE"
    assert store.write(ops.plan_delete_config("a")) == "NONE"
    assert store.read(partial(ops.get_config, subject="a", default_to_global=True)) == "FULL"
    assert store.write(ops.plan_delete_config(None)) == "FULL"
    assert store.read(partial(ops.get_config, subject=None)) == "BACKWARD"
    assert api_error(store.write, ops.plan_delete_config("a")).error_code == 40401


@pytest.mark.parametrize("body", [{"compatibility": "SIDEWAYS"}, {}, {"compatibility": None}, ["FULL"], "FULL"])
def test_config__invalid_level_is_42203(body: object) -> None:
    err = api_error(ops.plan_set_config, "a", body)
    assert (err.status, err.error_code) == (422, 42203)
    assert "BACKWARD" in err.message


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("latest", ops.LATEST), ("-1", ops.LATEST),
                                               ("LATEST", ops.LATEST), (str(2**31 - 1), 2**31 - 1)])
def test_parse_version__valid(raw: str, expected: object) -> None:
    assert ops.parse_version(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-2", "one", "1.5", str(2**31), ""])
def test_parse_version__invalid_is_42202(raw: str) -> None:
    assert api_error(ops.parse_version, raw).error_code == 42202


@pytest.mark.parametrize(("body", "reason"), [
    ({"schema": '{"type": "nosuch"}'}, "nosuch"),
    ({"schema": "{not json"}, "not JSON"),
    ({"schema": 42}, "string"),
    ({}, "no \"schema\" field"),
    ([], "JSON object"),
    ({"schema": BASE, "schemaType": "PROTOBUF"}, "PROTOBUF"),
    ({"schema": BASE, "schemaType": "JSON"}, "AVRO"),
    ({"schema": BASE, "references": [{"name": "x", "subject": "y", "version": 1}]}, "references"),
])
def test_schema_request__invalid_is_42201_with_the_reason(body: object, reason: str) -> None:
    err = api_error(ops.SchemaRequest.from_body, body)
    assert (err.status, err.error_code) == (422, 42201)
    assert reason in err.message


def test_schema_request__avro_type_and_empty_references_are_fine() -> None:
    assert ops.SchemaRequest.from_body({"schema": BASE, "schemaType": "AVRO", "references": []}).schema_type == "AVRO"


def test_subjects__prefix_and_deleted(store: InMemorySchemaStore) -> None:
    register(store, "app.one", BASE)
    register(store, "app.two", BASE)
    register(store, "other", BASE)
    store.write(ops.plan_delete_subject("app.two"))
    assert store.read(partial(ops.list_subjects)) == ["app.one", "other"]
    assert store.read(partial(ops.list_subjects, prefix="app.", deleted=True)) == ["app.one", "app.two"]
    assert store.read(partial(ops.list_subjects, deleted_only=True)) == ["app.two"]
