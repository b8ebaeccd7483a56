"""What confluent-kafka clients and registry tools expect of a Confluent-API registry, on the
Kafka-backed registry: modes, imports with ids, references, the listing and metadata endpoints,
Confluent's error codes and data-contract fields. Modelled on the behaviours Confluent's
RestApiTest pins down and the public conformance suites of other registries check (AxonOps'
tests/bdd/features: mode_enforcement, import_mode_comprehensive, confluent_conformance,
metadata_rulesets), written here from those behaviours, not copied.

The module runs its own registry on its own topic: these tests change the global mode and config.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.registry.server import RegistryHandle, start_registry_in_thread
from tests.unit.registry.compat_cases import BASE, HOST, VALUE, record

V2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
ADDRESS = json.dumps({"type": "record", "name": "Address", "namespace": "com.acme",
                      "fields": [{"name": "street", "type": "string"}]})
USER = json.dumps({"type": "record", "name": "User", "namespace": "com.acme",
                   "fields": [{"name": "name", "type": "string"}, {"name": "home", "type": "com.acme.Address"}]})


@pytest.fixture(scope="module")
def module_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(update={"topic_prefix": f"conf-{uuid.uuid4().hex[:8]}-"})


@pytest.fixture(scope="module")
def registry(module_settings: Settings) -> Iterator[RegistryHandle]:
    handle = start_registry_in_thread(module_settings, host="127.0.0.1", port=0)
    yield handle
    handle.stop()


@pytest.fixture
def http(registry: RegistryHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        yield client
        # Leave the registry as the next test expects it: READWRITE, BACKWARD, no global fields.
        client.delete("/mode")
        client.delete("/config")


@pytest.fixture
def name() -> Callable[[str], str]:
    tag = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{tag}"


def error_of(resp: httpx.Response) -> tuple[int, int]:
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    return resp.status_code, body["error_code"]


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- modes -----------------------------------------------------------------------------------
def test_mode__global_and_subject_get_put_delete(http: httpx.Client, name: Callable[[str], str]) -> None:
    s = name("mode")
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}
    assert error_of(http.get(f"/mode/{s}")) == (404, 40409)
    assert ok(http.get(f"/mode/{s}", params={"defaultToGlobal": "true"})) == {"mode": "READWRITE"}
    assert ok(http.put(f"/mode/{s}", json={"mode": "READONLY"})) == {"mode": "READONLY"}
    assert ok(http.get(f"/mode/{s}")) == {"mode": "READONLY"}
    assert error_of(http.put(f"/mode/{s}", json={"mode": "WRITEONLY"})) == (422, 42204)
    assert ok(http.delete(f"/mode/{s}")) == {"mode": "READONLY"}
    assert error_of(http.delete(f"/mode/{s}")) == (404, 40401)
    assert ok(http.put("/mode", json={"mode": "READONLY_OVERRIDE"})) == {"mode": "READONLY_OVERRIDE"}
    assert ok(http.delete("/mode")) == {"mode": "READONLY_OVERRIDE"}
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}


def test_mode__readonly_refuses_writes_with_42205_and_serves_reads(http: httpx.Client,
                                                                   name: Callable[[str], str]) -> None:
    s, other = name("ro"), name("rw")
    ok(http.post(f"/subjects/{s}/versions", json={"schema": BASE}))
    ok(http.put(f"/mode/{s}", json={"mode": "READONLY"}))
    for resp in (http.post(f"/subjects/{s}/versions", json={"schema": V2}), http.delete(f"/subjects/{s}"),
                 http.delete(f"/subjects/{s}/versions/1"), http.put(f"/config/{s}", json={"compatibility": "NONE"})):
        assert error_of(resp) == (422, 42205)
    assert ok(http.get(f"/subjects/{s}/versions/latest"))["version"] == 1
    assert ok(http.post(f"/subjects/{s}", json={"schema": BASE}))["id"] >= 1
    ok(http.post(f"/subjects/{other}/versions", json={"schema": record(HOST, name="Other")}))  # only s is read-only
    # A global READONLY_OVERRIDE beats a subject's own READWRITE.
    ok(http.put(f"/mode/{other}", json={"mode": "READWRITE"}))
    ok(http.put("/mode", json={"mode": "READONLY_OVERRIDE"}))
    assert error_of(http.post(f"/subjects/{other}/versions", json={"schema": record(HOST, name="Other2")})) == (
        422, 42205)
    ok(http.delete("/mode"))
    ok(http.put(f"/mode/{s}", json={"mode": "READWRITE"}))
    assert ok(http.post(f"/subjects/{s}/versions", json={"schema": V2}))["version"] == 2


def test_import__keeps_ids_and_versions_refuses_conflicts_and_new_ids_continue_above(
        http: httpx.Client, name: Callable[[str], str]) -> None:
    s, t = name("imp"), name("imp2")
    base_id = 90_000 + uuid.uuid4().int % 1000 * 10
    assert error_of(http.post(f"/subjects/{s}/versions", json={"schema": BASE, "id": base_id})) == (422, 42205)
    ok(http.post(f"/subjects/{name('existing')}/versions", json={"schema": record(HOST, name="Existing")}))
    assert error_of(http.put("/mode", json={"mode": "IMPORT"})) == (422, 42205)  # subjects exist: force
    ok(http.put("/mode", params={"force": "true"}, json={"mode": "IMPORT"}))
    assert ok(http.post(f"/subjects/{s}/versions", json={"schema": BASE, "id": base_id, "version": 3})) == {
        "id": base_id, "version": 3, "subject": s}
    # Incompatible with version 3, but an import skips the check: the source registry made it.
    breaking = record(HOST, {"name": "value", "type": "string"})
    assert ok(http.post(f"/subjects/{s}/versions", json={"schema": breaking, "id": base_id + 1}))["version"] == 4
    assert ok(http.post(f"/subjects/{t}/versions", json={"schema": BASE, "id": base_id}))["id"] == base_id
    assert error_of(http.post(f"/subjects/{t}/versions", json={"schema": V2, "id": base_id})) == (422, 42205)
    assert error_of(http.post(f"/subjects/{t}/versions", json={"schema": V2})) == (422, 42205)
    ok(http.delete("/mode"))
    fresh = ok(http.post(f"/subjects/{name('after')}/versions", json={"schema": record(HOST, name="After")}))
    assert fresh["id"] > base_id + 1
    assert ok(http.get(f"/subjects/{s}/versions/3"))["id"] == base_id
    assert ok(http.get(f"/schemas/ids/{base_id}"))["schema"] == BASE


# -- references ------------------------------------------------------------------------------
def test_references__register_resolve_referencedby_and_guarded_delete(http: httpx.Client,
                                                                      name: Callable[[str], str]) -> None:
    addr, user = name("address"), name("user")
    ok(http.post(f"/subjects/{addr}/versions", json={"schema": ADDRESS}))
    refs = [{"name": "com.acme.Address", "subject": addr, "version": 1}]
    assert error_of(http.post(f"/subjects/{user}/versions", json={"schema": USER})) == (422, 42201)
    user_id = ok(http.post(f"/subjects/{user}/versions", json={"schema": USER, "references": refs}))["id"]
    by_id = ok(http.get(f"/schemas/ids/{user_id}"))
    assert by_id["references"] == refs and by_id["schemaType"] == "AVRO"
    assert ok(http.get(f"/subjects/{user}/versions/1"))["references"] == refs
    assert ok(http.post(f"/subjects/{user}", json={"schema": USER, "references": refs}))["id"] == user_id
    assert ok(http.get(f"/subjects/{addr}/versions/1/referencedby")) == [user_id]
    assert error_of(http.delete(f"/subjects/{addr}/versions/1")) == (422, 42206)
    assert error_of(http.delete(f"/subjects/{addr}")) == (422, 42206)
    ok(http.delete(f"/subjects/{user}"))
    assert ok(http.get(f"/subjects/{addr}/versions/1/referencedby")) == []
    assert ok(http.delete(f"/subjects/{addr}")) == [1]


# -- endpoints clients and UIs call ------------------------------------------------------------
def test_listing_and_server_endpoints(http: httpx.Client, name: Callable[[str], str]) -> None:
    prefix = name("list")
    a, b = f"{prefix}-a{{x}}", f"{prefix}-b"  # braces are fine in a subject
    own = f"L{prefix.replace('-', '')}"  # schemas no other test registers
    v1, v2 = record(HOST, VALUE, name=own), record(HOST, VALUE, {"name": "u", "type": "int", "default": 0}, name=own)
    first = ok(http.post(f"/subjects/{a}/versions", json={"schema": v1}))["id"]
    second = ok(http.post(f"/subjects/{a}/versions", json={"schema": v2}))["id"]
    ok(http.post(f"/subjects/{b}/versions", json={"schema": v1}))
    ok(http.delete(f"/subjects/{b}"))
    listed = ok(http.get("/schemas", params={"subjectPrefix": prefix}))
    assert [(x["subject"], x["version"], x["id"]) for x in listed] == [(a, 1, first), (a, 2, second)]
    assert [(x["subject"], x["version"]) for x in ok(http.get("/schemas", params={
        "subjectPrefix": prefix, "deleted": "true", "latestOnly": "true"}))] == [(a, 2), (b, 1)]
    assert len(ok(http.get("/schemas", params={"subjectPrefix": prefix, "offset": 1, "limit": 1}))) == 1
    assert ok(http.get(f"/schemas/ids/{first}/subjects")) == [a]
    assert ok(http.get(f"/schemas/ids/{first}/subjects", params={"deleted": "true"})) == [a, b]
    assert ok(http.get(f"/schemas/ids/{first}/versions", params={"deleted": "true"})) == [
        {"subject": a, "version": 1}, {"subject": b, "version": 1}]
    assert ok(http.get("/subjects", params={"subjectPrefix": prefix, "deletedOnly": "true"})) == [b]
    assert ok(http.get("/subjects", params={"subjectPrefix": prefix, "deleted_only": "true"})) == [b]
    assert ok(http.get(f"/schemas/ids/{first}", params={"fetchMaxId": "true"}))["maxId"] >= second
    assert ok(http.get("/contexts")) == ["."]
    clusters = ok(http.get("/v1/metadata/id"))["scope"]["clusters"]
    assert clusters["kafka-cluster"] and clusters["schema-registry-cluster"]
    assert ok(http.get("/v1/metadata/version"))["version"]
    assert ok(http.get("/schemas/types")) == ["AVRO"]


# -- semantics and error codes -----------------------------------------------------------------
def test_compatibility__latest_is_the_latest_only_all_versions_follow_the_level(
        http: httpx.Client, name: Callable[[str], str]) -> None:
    s = name("compat")
    ok(http.put(f"/config/{s}", json={"compatibility": "BACKWARD_TRANSITIVE"}))
    ok(http.post(f"/subjects/{s}/versions", json={"schema": record(HOST)}))
    ok(http.post(f"/subjects/{s}/versions", json={"schema": record(HOST, {"name": "u", "type": "string",
                                                                          "default": ""})}))
    no_default = {"schema": record(HOST, {"name": "u", "type": "string"})}
    assert ok(http.post(f"/compatibility/subjects/{s}/versions/latest", json=no_default)) == {"is_compatible": True}
    assert ok(http.post(f"/compatibility/subjects/{s}/versions", json=no_default)) == {"is_compatible": False}
    assert error_of(http.post(f"/subjects/{s}/versions", json=no_default)) == (409, 409)


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("GET", "/subjects/{s}-none/versions", None, (404, 40401)),
    ("GET", "/subjects/{s}/versions/9", None, (404, 40402)),
    ("GET", "/schemas/ids/987654321", None, (404, 40403)),
    ("POST", "/subjects/{s}", {"schema": record(HOST, name="Elsewhere")}, (404, 40403)),
    ("POST", "/subjects/{s}/versions", {"schema": '{"type": "bogus"}'}, (422, 42201)),
    ("POST", "/subjects/{s}/versions", {"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}, (422, 42201)),
    ("POST", "/subjects/{s}/versions", {"schema": "{}", "schemaType": "JSON"}, (422, 42201)),
    ("GET", "/subjects/{s}/versions/x", None, (422, 42202)),
    ("POST", "/subjects/{s}/versions", {"schema": record(HOST, {"name": "value", "type": "string"})}, (409, 409)),
])
def test_error_codes__as_confluent(http: httpx.Client, name: Callable[[str], str], method: str, path: str,
                                   body: Any, expected: tuple[int, int]) -> None:
    s = name("err")
    ok(http.post(f"/subjects/{s}/versions", json={"schema": BASE}))
    resp = http.request(method, path.format(s=s), json=body)
    assert error_of(resp) == expected
    if "schemaType" in (body or {}):
        assert "AVRO" in resp.json()["message"]


def test_soft_delete__keeps_the_subject_config_until_the_permanent_delete(http: httpx.Client,
                                                                         name: Callable[[str], str]) -> None:
    s = name("keep")
    ok(http.post(f"/subjects/{s}/versions", json={"schema": BASE}))
    ok(http.put(f"/config/{s}", json={"compatibility": "FULL"}))
    ok(http.delete(f"/subjects/{s}"))
    assert ok(http.get(f"/config/{s}")) == {"compatibilityLevel": "FULL"}
    ok(http.delete(f"/subjects/{s}", params={"permanent": "true"}))
    assert error_of(http.get(f"/config/{s}")) == (404, 40408)


def test_contract_fields__stored_returned_and_normalize_applied(http: httpx.Client,
                                                               name: Callable[[str], str]) -> None:
    s = name("contract")
    rules = {"domainRules": [{"name": "checkHost", "kind": "CONDITION", "mode": "WRITE", "type": "CEL",
                              "expr": "size(message.host) > 0"}]}
    body = {"schema": BASE, "metadata": {"properties": {"owner": "team-a"}, "sensitive": ["host"]}, "ruleSet": rules}
    schema_id = ok(http.post(f"/subjects/{s}/versions", json=body))["id"]
    got = ok(http.get(f"/subjects/{s}/versions/1"))
    assert got["metadata"] == body["metadata"] and got["ruleSet"] == rules and got["schemaType"] == "AVRO"
    config = {"compatibility": "FORWARD", "compatibilityGroup": "app.version", "alias": f"{s}-alias",
              "normalize": True, "validateFields": False,
              "defaultMetadata": {"properties": {"team": "core"}}, "overrideMetadata": {"properties": {"x": "y"}},
              "defaultRuleSet": rules, "overrideRuleSet": {"migrationRules": []}}
    assert ok(http.put(f"/config/{s}", json=config)) == config
    stored = ok(http.get(f"/config/{s}"))
    assert stored == {**{k: v for k, v in config.items() if k != "compatibility"}, "compatibilityLevel": "FORWARD"}
    spaced = json.dumps(json.loads(V2), indent=4)
    v2 = ok(http.post(f"/subjects/{s}/versions", json={"schema": spaced}))
    text = ok(http.get(f"/subjects/{s}/versions/{v2['version']}"))["schema"]
    assert "\n" not in text and json.loads(text) == json.loads(ok(http.get(f"/schemas/ids/{v2['id']}"))["schema"])
    assert ok(http.get(f"/subjects/{s}/versions/2"))["metadata"]["properties"] == {
        "owner": "team-a", "team": "core", "x": "y"}
    assert ok(http.get(f"/schemas/ids/{schema_id}"))["metadata"] == body["metadata"]


# -- state survives restarts and agrees across instances ------------------------------------------
def test_restart_and_second_instance__modes_configs_references_and_ids_are_identical(
        module_settings: Settings, http: httpx.Client, name: Callable[[str], str]) -> None:
    addr, user, imp = name("r-address"), name("r-user"), name("r-import")
    ok(http.post(f"/subjects/{addr}/versions", json={"schema": ADDRESS}))
    refs = [{"name": "com.acme.Address", "subject": addr, "version": 1}]
    ok(http.post(f"/subjects/{user}/versions", json={"schema": USER, "references": refs,
                                                      "metadata": {"properties": {"k": "v"}}}))
    ok(http.put(f"/mode/{imp}", json={"mode": "IMPORT"}))
    imported_id = 95_000 + uuid.uuid4().int % 1000
    ok(http.post(f"/subjects/{imp}/versions", json={"schema": record(HOST, name="Imp"), "id": imported_id,
                                                     "version": 5}))
    ok(http.put(f"/config/{user}", json={"compatibility": "NONE", "normalize": True}))
    ok(http.put(f"/mode/{addr}", json={"mode": "READONLY"}))

    def everything(url: str) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=30) as other:
            return {
                "schemas": ok(other.get("/schemas", params={"deleted": "true"})),
                "modes": {s: ok(other.get(f"/mode/{s}")) for s in (addr, imp)},
                "config": ok(other.get(f"/config/{user}")),
                "referencedby": ok(other.get(f"/subjects/{addr}/versions/1/referencedby")),
                "imported": ok(other.get(f"/schemas/ids/{imported_id}")),
                "max_id": ok(other.get(f"/schemas/ids/{imported_id}", params={"fetchMaxId": "true"}))["maxId"],
            }

    before = everything(http.base_url.__str__())
    second = start_registry_in_thread(module_settings, host="127.0.0.1", port=0)
    try:
        assert everything(second.url) == before
        with httpx.Client(base_url=second.url, timeout=30) as other:
            # The second instance enforces the first one's modes and hands out ids above the imported one.
            address_v2 = json.dumps({**json.loads(ADDRESS), "doc": "a new version"})
            assert error_of(other.post(f"/subjects/{addr}/versions", json={"schema": address_v2})) == (422, 42205)
            new_id = ok(other.post(f"/subjects/{name('r-new')}/versions", json={"schema": record(HOST, name="N")}))
            assert new_id["id"] > imported_id
    finally:
        second.stop()
