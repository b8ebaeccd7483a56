"""Data-contract fields: metadata and rule sets merged with the subject's config, as Confluent does."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from app.registry import operations as ops
from app.registry.contracts import InvalidContract, merge_metadata, merge_rule_sets, validate_rule_set
from app.registry.registration import plan_register
from app.registry.schema_request import LATEST, SchemaRequest
from app.registry.store import InMemorySchemaStore

from .compat_cases import BASE, HOST, VALUE, record


def rule(name: str, expr: str = "true") -> dict[str, Any]:
    return {"name": name, "kind": "CONDITION", "mode": "WRITE", "type": "CEL", "expr": expr}


def test_merge_metadata__properties_and_tags_by_name_sensitive_together() -> None:
    old = {"properties": {"a": "1", "b": "1"}, "tags": {"f": ["PII"]}, "sensitive": ["x"]}
    new = {"properties": {"b": "2"}, "sensitive": ["y"]}
    assert merge_metadata(old, new) == {"properties": {"a": "1", "b": "2"}, "tags": {"f": ["PII"]},
                                        "sensitive": ["x", "y"]}
    assert merge_metadata(None, new) == new and merge_metadata(old, None) == old


def test_merge_rule_sets__a_new_rule_replaces_the_old_one_of_its_name() -> None:
    old = {"domainRules": [rule("a"), rule("b")], "migrationRules": [rule("m")]}
    new = {"domainRules": [rule("b", "false"), rule("c")]}
    assert merge_rule_sets(old, new) == {"domainRules": [rule("a"), rule("b", "false"), rule("c")],
                                         "migrationRules": [rule("m")]}


@pytest.mark.parametrize("value", [[], {"domainRules": {}}, {"domainRules": [{"kind": "X"}]},
                                   {"domainRules": [rule("a"), rule("a")]}])
def test_validate_rule_set__malformed_is_refused(value: object) -> None:
    with pytest.raises(InvalidContract) as err:
        validate_rule_set(value)
    assert err.value.rule_set


def test_register__default_and_override_metadata_from_the_config_and_carry_over() -> None:
    store = InMemorySchemaStore()
    store.write(ops.plan_set_config("s", {"defaultMetadata": {"properties": {"owner": "platform", "tier": "2"}},
                                          "overrideMetadata": {"properties": {"tier": "1"}}}))
    body = {"schema": BASE, "metadata": {"properties": {"owner": "team-a", "tier": "3"}}}
    store.write(plan_register("s", SchemaRequest.from_body(body)))
    first = store.read(partial(ops.get_version, subject="s", version=1))
    assert first.metadata == {"properties": {"owner": "team-a", "tier": "1"}}
    v2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
    store.write(plan_register("s", SchemaRequest.from_body({"schema": v2})))
    assert store.read(partial(ops.get_version, subject="s", version=LATEST)).metadata == first.metadata


def test_register__same_schema_other_metadata_is_a_new_version_with_the_same_id() -> None:
    store = InMemorySchemaStore()
    first = store.write(plan_register("s", SchemaRequest.from_body({"schema": BASE})))
    again = store.write(plan_register("s", SchemaRequest.from_body({"schema": BASE})))
    tagged = store.write(plan_register("s", SchemaRequest.from_body(
        {"schema": BASE, "metadata": {"properties": {"owner": "x"}}})))
    assert (again.version, again.schema_id) == (first.version, first.schema_id)
    assert (tagged.version, tagged.schema_id) == (2, first.schema_id)


def test_register__normalize_stores_the_canonical_form() -> None:
    store = InMemorySchemaStore()
    spaced = '{ "name": "N", "type": "record", "fields": [ {"type": "string", "name": "a"} ] }'
    sv = store.write(plan_register("s", SchemaRequest.from_body({"schema": spaced}), normalize=True))
    assert sv.schema == '{"fields":[{"name":"a","type":"string"}],"name":"N","type":"record"}'
    store.write(ops.plan_set_config("t", {"normalize": True}))
    other = store.write(plan_register("t", SchemaRequest.from_body({"schema": spaced})))
    assert other.schema_id == sv.schema_id and other.schema == sv.schema
