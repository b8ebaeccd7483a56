"""Schema references: registration, resolution, identity, referencedby and guarded deletes."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.registration import plan_register
from app.registry.schema_request import LATEST, SchemaRequest
from app.registry.store import InMemorySchemaStore

ADDRESS = json.dumps({"type": "record", "name": "Address", "namespace": "com.acme", "fields": [
    {"name": "street", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["HOME", "WORK"]}}]})
ADDRESS_V2 = json.dumps({"type": "record", "name": "Address", "namespace": "com.acme", "fields": [
    {"name": "street", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["HOME", "WORK"]}},
    {"name": "zip", "type": "string", "default": ""}]})
USER = json.dumps({"type": "record", "name": "User", "namespace": "com.acme", "fields": [
    {"name": "name", "type": "string"}, {"name": "address", "type": "Address"}, {"name": "kind", "type": "Kind"}]})
ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "com.acme", "fields": [
    {"name": "buyer", "type": "User"}]})


def ref(name: str, subject: str, version: int) -> dict[str, Any]:
    return {"name": name, "subject": subject, "version": version}


@pytest.fixture
def store() -> InMemorySchemaStore:
    s = InMemorySchemaStore()
    register(s, "address", ADDRESS)
    return s


def register(store: InMemorySchemaStore, subject: str, text: str, refs: list[dict[str, Any]] | None = None,
             **fields: Any) -> tuple[int, int]:
    body = {"schema": text, "references": refs or [], **fields}
    sv = store.write(plan_register(subject, SchemaRequest.from_body(body)))
    return sv.schema_id, sv.version


def api_error(fn, *args, **kwargs) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        fn(*args, **kwargs)
    return err.value


def test_register__named_types_of_another_subject_resolve(store: InMemorySchemaStore) -> None:
    assert register(store, "user", USER, [ref("com.acme.Address", "address", 1)]) == (2, 1)
    sv = store.read(partial(ops.get_version, subject="user", version=1))
    assert [r.body() for r in sv.references] == [ref("com.acme.Address", "address", 1)]
    assert store.read(partial(ops.schema_by_id, schema_id=2)).references == sv.references
    # Nested: Order references User, which references Address.
    assert register(store, "order", ORDER, [ref("com.acme.User", "user", 1)]) == (3, 1)


def test_register__same_text_same_references_is_one_id_other_references_another(
        store: InMemorySchemaStore) -> None:
    register(store, "address", ADDRESS_V2)
    first = register(store, "user", USER, [ref("com.acme.Address", "address", 1)])
    assert register(store, "user-copy", json.dumps(json.loads(USER), indent=2),
                    [ref("com.acme.Address", "address", 1)]) == (first[0], 1)
    assert register(store, "user", USER, [ref("com.acme.Address", "address", 1)]) == first
    other = register(store, "user", USER, [ref("com.acme.Address", "address", 2)])
    assert other == (first[0] + 1, 2)


def test_register__latest_reference_version_is_stored_resolved(store: InMemorySchemaStore) -> None:
    register(store, "address", ADDRESS_V2)
    register(store, "user", USER, [ref("com.acme.Address", "address", -1)])
    sv = store.read(partial(ops.get_version, subject="user", version=LATEST))
    assert sv.references[0].version == 2


@pytest.mark.parametrize(("refs", "reason"), [
    ([], "Address"),
    ([ref("com.acme.Address", "address", 9)], "does not exist"),
    ([ref("com.acme.Address", "nowhere", 1)], "does not exist"),
])
def test_register__unresolvable_references_are_42201(store: InMemorySchemaStore, refs: list[dict[str, Any]],
                                                     reason: str) -> None:
    err = api_error(register, store, "user", USER, refs)
    assert (err.status, err.error_code) == (422, 42201) and reason in err.message


def test_lookup_and_compatibility_resolve_references(store: InMemorySchemaStore) -> None:
    register(store, "user", USER, [ref("com.acme.Address", "address", 1)])
    found = store.read(partial(ops.lookup, subject="user", request=SchemaRequest.from_body(
        {"schema": USER, "references": [ref("com.acme.Address", "address", 1)]})))
    assert found.version == 1
    renamed = json.dumps({**json.loads(USER), "fields": [{"name": "name", "type": "string"},
                                                         {"name": "address", "type": "Address"}]})
    ok, _ = store.read(partial(ops.check_compatibility, subject="user", version=LATEST, request=SchemaRequest.from_body(
        {"schema": renamed, "references": [ref("com.acme.Address", "address", 1)]})))
    assert ok  # dropping a field is backward compatible


def test_referenced_versions_cannot_be_deleted_until_the_referrers_are(store: InMemorySchemaStore) -> None:
    user_id, _ = register(store, "user", USER, [ref("com.acme.Address", "address", 1)])
    assert store.read(partial(ops.referenced_by, subject="address", version=1)) == [user_id]
    for plan in (ops.plan_delete_version("address", 1), ops.plan_delete_subject("address")):
        err = api_error(store.write, plan)
        assert (err.status, err.error_code) == (422, 42206) and "'user' version 1" in err.message
    store.write(ops.plan_delete_subject("user"))  # a soft-deleted referrer no longer holds it
    assert store.read(partial(ops.referenced_by, subject="address", version=1)) == []
    assert store.write(ops.plan_delete_subject("address")) == [1]
    assert store.write(ops.plan_delete_subject("address", permanent=True)) == [1]
