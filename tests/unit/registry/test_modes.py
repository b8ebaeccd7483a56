"""Modes (READWRITE, READONLY, READONLY_OVERRIDE, IMPORT) and explicit ids, as Confluent's registry has them."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from app.registry import operations as ops
from app.registry.errors import ApiError
from app.registry.modes import effective_mode
from app.registry.registration import plan_register
from app.registry.schema_request import SchemaRequest
from app.registry.store import InMemorySchemaStore

from .compat_cases import BASE, HOST, VALUE, record

V2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
BREAKING = record(HOST, {"name": "value", "type": "string"})


@pytest.fixture
def store() -> InMemorySchemaStore:
    return InMemorySchemaStore()


def register(store: InMemorySchemaStore, subject: str, text: str, **fields: Any) -> tuple[int, int]:
    sv = store.write(plan_register(subject, SchemaRequest.from_body({"schema": text, **fields})))
    return sv.schema_id, sv.version


def set_mode(store: InMemorySchemaStore, subject: str | None, mode: str, *, force: bool = False) -> str:
    return store.write(ops.plan_set_mode(subject, {"mode": mode}, force=force))


def api_error(fn, *args, **kwargs) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        fn(*args, **kwargs)
    return err.value


@pytest.mark.parametrize(("global_mode", "subject_mode", "expected"), [
    (None, None, "READWRITE"), ("READONLY", None, "READONLY"), ("READONLY", "READWRITE", "READWRITE"),
    ("IMPORT", "READWRITE", "READWRITE"), ("READONLY_OVERRIDE", "READWRITE", "READONLY_OVERRIDE"),
    (None, "IMPORT", "IMPORT"),
])
def test_effective_mode__subject_over_global_except_readonly_override(
        global_mode: str | None, subject_mode: str | None, expected: str) -> None:
    assert effective_mode(global_mode, subject_mode) == expected


def test_mode__get_set_delete_and_default_to_global(store: InMemorySchemaStore) -> None:
    assert store.read(partial(ops.get_mode, subject=None)) == "READWRITE"
    assert api_error(store.read, partial(ops.get_mode, subject="a")).error_code == 40409
    assert store.read(partial(ops.get_mode, subject="a", default_to_global=True)) == "READWRITE"
    assert set_mode(store, "a", "readonly") == "READONLY"
    assert store.read(partial(ops.get_mode, subject="a")) == "READONLY"
    assert set_mode(store, None, "READONLY_OVERRIDE") == "READONLY_OVERRIDE"
    assert store.read(partial(ops.get_mode, subject="a")) == "READONLY"
    assert store.read(partial(ops.get_mode, subject="b", default_to_global=True)) == "READONLY_OVERRIDE"
    assert store.write(ops.plan_delete_mode(None)) == "READONLY_OVERRIDE"
    assert store.write(ops.plan_delete_mode(None)) == "READWRITE"  # idempotent
    assert store.write(ops.plan_delete_mode("a")) == "READONLY"
    assert api_error(store.write, ops.plan_delete_mode("a")).error_code == 40401
    assert api_error(ops.plan_set_mode, "a", {"mode": "SIDEWAYS"}).error_code == 42204
    assert api_error(ops.plan_set_mode, "a", {}).error_code == 42204


@pytest.mark.parametrize("mode", ["READONLY", "READONLY_OVERRIDE"])
def test_readonly__refuses_every_write_with_42205_but_reads_and_known_schemas_work(
        store: InMemorySchemaStore, mode: str) -> None:
    register(store, "a", BASE)
    set_mode(store, None, mode)
    for write in (partial(register, store, "a", V2), partial(store.write, ops.plan_delete_subject("a")),
                  partial(store.write, ops.plan_delete_version("a", 1)),
                  partial(store.write, ops.plan_set_config("a", {"compatibility": "NONE"}))):
        err = api_error(write)
        assert (err.status, err.error_code) == (422, 42205) and "read-only" in err.message
    # Registering what is already there writes nothing, so it is answered (serializers do it at start).
    assert register(store, "a", BASE) == (1, 1)
    assert store.read(partial(ops.list_versions, subject="a")) == [1]
    set_mode(store, None, "READWRITE")
    assert register(store, "a", V2) == (2, 2)


def test_readonly_override__beats_a_subjects_own_readwrite(store: InMemorySchemaStore) -> None:
    set_mode(store, "a", "READWRITE")
    set_mode(store, None, "READONLY")
    assert register(store, "a", BASE) == (1, 1)  # the subject's own READWRITE wins over READONLY
    set_mode(store, None, "READONLY_OVERRIDE")
    assert api_error(register, store, "a", V2).error_code == 42205


def test_import__keeps_ids_and_versions_skips_compatibility_and_ids_continue_above(
        store: InMemorySchemaStore) -> None:
    set_mode(store, None, "IMPORT")
    assert register(store, "a", BASE, id=70, version=3) == (70, 3)
    assert register(store, "a", BREAKING, id=71) == (71, 4)  # incompatible, but the source checked it
    assert register(store, "b", BASE, id=70, version=1) == (70, 1)  # same schema, same id: shared
    assert register(store, "a", BASE, id=70, version=3) == (70, 3)  # idempotent
    err = api_error(register, store, "c", V2, id=70)
    assert err.error_code == 42205 and "id 70" in err.message  # never silently replaced
    assert api_error(register, store, "c", V2).error_code == 42205  # IMPORT takes only explicit ids
    set_mode(store, None, "READWRITE")
    assert register(store, "c", V2) == (72, 1)
    assert store.read(partial(ops.get_version, subject="a", version=3)).schema_id == 70


def test_readwrite__an_explicit_id_is_honoured_only_when_it_already_is_this_schemas(
        store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    assert register(store, "a", BASE, id=1) == (1, 1)
    assert register(store, "b", BASE, id=1) == (1, 1)  # id 1 is this schema, in another subject
    err = api_error(register, store, "a", BASE, id=5)  # free, but only IMPORT hands out chosen ids
    assert err.error_code == 42205 and "import mode" in err.message
    assert api_error(register, store, "c", V2, id=1).error_code == 42205  # id 1 is another schema
    assert store.read(partial(ops.list_subjects)) == ["a", "b"]


def test_readwrite__an_explicit_version_must_be_the_next_one(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    assert register(store, "a", V2, version=2) == (2, 2)
    v3 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""}, {"name": "n", "type": "int",
                                                                                "default": 0})
    err = api_error(register, store, "a", v3, version=7)
    assert err.error_code == 42201 and "not one more" in err.message


def test_import_mode__entering_it_with_live_subjects_needs_force(store: InMemorySchemaStore) -> None:
    register(store, "a", BASE)
    err = api_error(set_mode, store, None, "IMPORT")
    assert err.error_code == 42205 and "force" in err.message
    assert api_error(set_mode, store, "a", "IMPORT").error_code == 42205
    assert set_mode(store, "b", "IMPORT") == "IMPORT"  # no versions under b
    assert set_mode(store, None, "IMPORT", force=True) == "IMPORT"
    assert set_mode(store, "a", "IMPORT") == "IMPORT"  # already in force
