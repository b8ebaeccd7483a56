"""The HTTP layer over an in-memory store: routes, Confluent error bodies, never crashing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.config import load_settings
from app.registry.cli import parse_listen, registry_group
from app.registry.server import CONTENT_TYPE, RegistryHandle, start_registry_in_thread
from app.registry.store import InMemorySchemaStore

from .compat_cases import BASE, HOST, record


class FlakyStore(InMemorySchemaStore):
    """Raises an unexpected exception while `broken` is set (a bug, not an ApiError)."""

    broken = False

    def read(self, query: Callable[..., Any]) -> Any:
        if self.broken:
            raise RuntimeError("disk on fire")
        return super().read(query)


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def server(store: FlakyStore) -> Iterator[RegistryHandle]:
    handle = start_registry_in_thread(load_settings(), host="127.0.0.1", port=0, store=store)
    yield handle
    handle.stop()


@pytest.fixture
def http(server: RegistryHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def error_of(resp: httpx.Response) -> tuple[int, int]:
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"]
    return resp.status_code, body["error_code"]


def test_root_and_content_type(http: httpx.Client) -> None:
    resp = http.get("/")
    assert resp.status_code == 200 and resp.json() == {}
    assert resp.headers["content-type"].startswith(CONTENT_TYPE)


def test_register_then_read_every_way(http: httpx.Client) -> None:
    resp = http.post("/subjects/t.Reading/versions", json={"schema": BASE})
    assert resp.status_code == 200 and resp.json() == {"id": 1, "version": 1, "subject": "t.Reading"}
    assert http.get("/subjects").json() == ["t.Reading"]
    assert http.get("/subjects/t.Reading/versions").json() == [1]
    expected = {"subject": "t.Reading", "version": 1, "id": 1, "schemaType": "AVRO", "schema": BASE}
    assert http.get("/subjects/t.Reading/versions/latest").json() == expected
    assert http.get("/subjects/t.Reading/versions/1").json() == expected
    assert http.get("/subjects/t.Reading/versions/1/schema").text == BASE
    assert http.get("/schemas/ids/1", params={"subject": "t.Reading", "format": "serialized"}).json() == {
        "schema": BASE, "schemaType": "AVRO"}
    assert http.get("/schemas/ids/1/schema").text == BASE
    assert http.get("/schemas/ids/1/versions").json() == [{"subject": "t.Reading", "version": 1}]
    assert http.get("/schemas/ids/1/subjects").json() == ["t.Reading"]
    assert http.post("/subjects/t.Reading", json={"schema": BASE}).json() == expected
    assert http.get("/subjects/t.Reading/versions/1/referencedby").json() == []
    assert http.get("/schemas/types").json() == ["AVRO"]
    assert http.get("/mode").json() == {"mode": "READWRITE"}


@pytest.mark.parametrize(("raw", "name"), [("team%2Fa b", "team/a b"), ("a%7Bb%7D", "a{b}"),
                                           ("x{y}-value", "x{y}-value"), ("%3A.ctx%3As", ":.ctx:s"),
                                           ("%C3%A9t%C3%A9%25", "été%")])
def test_subject_names__any_character_confluent_accepts(http: httpx.Client, raw: str, name: str) -> None:
    assert http.post(f"/subjects/{raw}/versions", json={"schema": BASE}).status_code == 200
    assert http.get("/subjects").json() == [name]
    assert http.get(f"/subjects/{raw}/versions").json() == [1]
    assert http.put(f"/config/{raw}", json={"compatibility": "NONE"}).status_code == 200
    assert http.put(f"/mode/{raw}", json={"mode": "READONLY"}).json() == {"mode": "READONLY"}
    assert http.get(f"/mode/{raw}").json() == {"mode": "READONLY"}


def test_subject_name_with_control_characters_is_42208(http: httpx.Client) -> None:
    assert error_of(http.post("/subjects/a%0Ab/versions", json={"schema": BASE})) == (422, 42208)


def test_compatibility_endpoint_verbose_and_not(http: httpx.Client) -> None:
    url = "/compatibility/subjects/t.Reading/versions/latest"
    assert http.post(url, json={"schema": BASE}).json() == {"is_compatible": True}
    http.post("/subjects/t.Reading/versions", json={"schema": BASE})
    bad = {"schema": record(HOST, {"name": "value", "type": "string"})}
    assert http.post(url, json=bad).json() == {"is_compatible": False}
    body = http.post(url, json=bad, params={"verbose": "true"}).json()
    assert body["is_compatible"] is False and "'value'" in body["messages"][0]
    assert http.post("/compatibility/subjects/t.Reading/versions", json=bad).json() == {"is_compatible": False}


def test_mode_endpoints(http: httpx.Client) -> None:
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    assert error_of(http.get("/mode/s")) == (404, 40409)
    assert http.get("/mode/s", params={"defaultToGlobal": "true"}).json() == {"mode": "READWRITE"}
    assert http.put("/mode", json={"mode": "READONLY"}).json() == {"mode": "READONLY"}
    assert error_of(http.post("/subjects/s/versions", json={"schema": BASE})) == (422, 42205)
    assert error_of(http.put("/mode", json={"mode": "LATER"})) == (422, 42204)
    assert http.delete("/mode").json() == {"mode": "READONLY"}
    assert http.post("/subjects/s/versions", json={"schema": BASE}).status_code == 200
    assert error_of(http.put("/mode", json={"mode": "IMPORT"})) == (422, 42205)
    assert http.put("/mode", params={"force": "true"}, json={"mode": "IMPORT"}).json() == {"mode": "IMPORT"}
    body = {"schema": record(HOST, name="Imported"), "id": 42, "version": 7}
    assert http.post("/subjects/imp/versions", json=body).json() == {"id": 42, "version": 7, "subject": "imp"}
    assert error_of(http.delete("/mode/s")) == (404, 40401)
    assert http.delete("/mode").json() == {"mode": "IMPORT"}


def test_schemas_listing_by_id_extras_and_metadata_endpoints(http: httpx.Client) -> None:
    http.post("/subjects/a-value/versions", json={"schema": BASE, "metadata": {"properties": {"owner": "x"}}})
    http.post("/subjects/a-value/versions", json={"schema": record(HOST, {"name": "n", "type": "int", "default": 0})})
    http.post("/subjects/b-value/versions", json={"schema": BASE})
    http.delete("/subjects/b-value")
    listed = http.get("/schemas").json()
    assert [(s["subject"], s["version"], s["id"]) for s in listed] == [("a-value", 1, 1), ("a-value", 2, 2)]
    assert listed[0]["metadata"] == {"properties": {"owner": "x"}} and listed[0]["schemaType"] == "AVRO"
    assert listed[1]["metadata"] == {"properties": {"owner": "x"}}  # carried over from version 1
    assert [(s["subject"], s["version"]) for s in http.get("/schemas", params={"latestOnly": "true"}).json()] == [
        ("a-value", 2)]
    assert [s["subject"] for s in http.get("/schemas", params={"deleted": "true", "subjectPrefix": "b"}).json()] == [
        "b-value"]
    assert len(http.get("/schemas", params={"offset": 1, "limit": 1}).json()) == 1
    assert http.get("/schemas/ids/1", params={"fetchMaxId": "true"}).json()["maxId"] == 2
    assert http.get("/subjects", params={"deletedOnly": "true"}).json() == ["b-value"]
    found = http.get("/subjects/a-value/metadata", params={"key": "owner", "value": "x"}).json()
    assert found["version"] == 2
    assert error_of(http.get("/subjects/a-value/metadata", params={"key": "owner", "value": "y"})) == (404, 40403)
    assert http.get("/contexts").json() == ["."]
    assert http.get("/v1/metadata/id").json()["scope"]["clusters"]["schema-registry-cluster"] == "in-memory"
    assert http.get("/v1/metadata/version").json()["version"]


def test_config_endpoints(http: httpx.Client) -> None:
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert http.put("/config", json={"compatibility": "FULL"}).json() == {"compatibility": "FULL"}
    assert error_of(http.get("/config/s")) == (404, 40408)
    assert http.get("/config/s", params={"defaultToGlobal": "true"}).json() == {"compatibilityLevel": "FULL"}
    assert http.put("/config/s", json={"compatibility": "NONE"}).json() == {"compatibility": "NONE"}
    assert http.get("/config/s").json() == {"compatibilityLevel": "NONE"}
    assert http.delete("/config/s").json() == {"compatibilityLevel": "NONE"}
    assert http.delete("/config").json() == {"compatibilityLevel": "FULL"}
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


def test_deletes(http: httpx.Client) -> None:
    http.post("/subjects/s/versions", json={"schema": BASE})
    assert http.delete("/subjects/s/versions/1").json() == 1
    assert error_of(http.get("/subjects/s/versions")) == (404, 40401)
    assert http.get("/subjects/s/versions", params={"deleted": "true"}).json() == [1]
    assert http.get("/subjects", params={"deleted": "True"}).json() == ["s"]
    assert http.delete("/subjects/s", params={"permanent": "true"}).json() == [1]
    assert http.get("/subjects", params={"deleted": "true"}).json() == []


def test_pagination(http: httpx.Client) -> None:
    for name in "abcd":
        http.post(f"/subjects/{name}/versions", json={"schema": BASE})
    assert http.get("/subjects", params={"offset": 1, "limit": 2}).json() == ["b", "c"]
    assert http.get("/subjects", params={"offset": 0, "limit": -1}).json() == ["a", "b", "c", "d"]
    assert error_of(http.get("/subjects", params={"limit": "ten"})) == (400, 400)


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("GET", "/subjects/nope/versions", None, (404, 40401)),
    ("GET", "/subjects/nope/versions/latest", None, (404, 40401)),
    ("GET", "/subjects/t/versions/7", None, (404, 40402)),
    ("GET", "/subjects/t/versions/zero", None, (422, 42202)),
    ("GET", "/subjects/t/versions/0", None, (422, 42202)),
    ("GET", "/schemas/ids/99", None, (404, 40403)),
    ("GET", "/schemas/ids/abc", None, (404, 40403)),
    ("GET", "/schemas/ids/99/versions", None, (404, 40403)),
    ("POST", "/subjects/t", {"schema": record(HOST, name="Unknown")}, (404, 40403)),
    ("POST", "/subjects/t/versions", {"schema": '{"type": "bogus"}'}, (422, 42201)),
    ("POST", "/subjects/t/versions", {"schema": BASE, "schemaType": "JSON"}, (422, 42201)),
    ("POST", "/subjects/t/versions", {"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}, (422, 42201)),
    ("POST", "/subjects/t/versions", {"schema": BASE, "references": [{"name": "X", "subject": "no", "version": 1}]},
     (422, 42201)),
    ("POST", "/subjects/t/versions", {"schema": BASE, "ruleSet": {"domainRules": [{}]}}, (422, 42210)),
    ("POST", "/subjects/t/versions", {"nothing": 1}, (422, 42201)),
    ("POST", "/subjects/t/versions", "a string", (422, 42201)),
    ("POST", "/subjects/t/versions", {"schema": record(HOST, {"name": "value", "type": "string"})}, (409, 409)),
    ("PUT", "/config", {"compatibility": "MAYBE"}, (422, 42203)),
    ("PUT", "/config/t", {"level": "FULL"}, (422, 42203)),
    ("DELETE", "/subjects/nope", None, (404, 40401)),
    ("DELETE", "/subjects/t", {}, (404, 40405)),  # with permanent=true below
    ("GET", "/no/such/endpoint", None, (404, 404)),
    ("PATCH", "/subjects", None, (405, 405)),
])
def test_bad_requests__confluent_error_codes(http: httpx.Client, method: str, path: str, body: Any,
                                             expected: tuple[int, int]) -> None:
    http.post("/subjects/t/versions", json={"schema": BASE})
    params = {"permanent": "true"} if body == {} else None
    resp = http.request(method, path, json=body if body != {} else None, params=params)
    assert error_of(resp) == expected
    assert resp.headers["content-type"].startswith(CONTENT_TYPE)
    assert http.get("/").status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"schema": '])
def test_malformed_body__400_with_message_and_server_keeps_answering(http: httpx.Client, raw: bytes) -> None:
    resp = http.post("/subjects/t/versions", content=raw, headers={"Content-Type": CONTENT_TYPE})
    status, code = error_of(resp)
    assert status == 400 and code == 400
    assert http.get("/subjects").status_code == 200


def test_unexpected_exception__500_50001_then_recovers(http: httpx.Client, store: FlakyStore) -> None:
    store.broken = True
    resp = http.get("/subjects")
    assert error_of(resp) == (500, 50001)
    assert "disk on fire" in resp.json()["message"]
    store.broken = False
    assert http.get("/subjects").status_code == 200


def test_oversized_body__413_json(http: httpx.Client) -> None:
    resp = http.post("/subjects/t/versions", content=b"x" * (3 * 1024 * 1024))
    assert error_of(resp)[0] == 413
    assert http.get("/").status_code == 200


@pytest.mark.parametrize(("value", "expected"), [("127.0.0.1:8081", ("127.0.0.1", 8081)),
                                                 ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::1]:9000", ("::1", 9000))])
def test_parse_listen__host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8081", "host:", ":8081", "host:port", "host:70000"])
def test_serve_command__bad_listen_is_a_usage_error(value: str) -> None:
    result = CliRunner().invoke(registry_group, ["serve", "--listen", value])
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output


def test_serve_command__help_names_the_default() -> None:
    result = CliRunner().invoke(registry_group, ["serve", "--help"])
    assert result.exit_code == 0 and "127.0.0.1:8081" in result.output
