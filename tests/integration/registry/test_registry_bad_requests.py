"""Bad requests to the Kafka-backed registry get Confluent error codes; the server keeps answering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.unit.registry.compat_cases import BASE, HOST, record


@pytest.fixture
def http(registry_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry_url, timeout=20) as client:
        yield client


BAD: list[tuple[str, str, Any, int, int]] = [
    ("GET", "/subjects/{s}-missing/versions", None, 404, 40401),
    ("GET", "/subjects/{s}/versions/42", None, 404, 40402),
    ("GET", "/subjects/{s}/versions/first", None, 422, 42202),
    ("GET", "/schemas/ids/987654", None, 404, 40403),
    ("POST", "/subjects/{s}", {"schema": record(HOST, name="NotThere")}, 404, 40403),
    ("POST", "/subjects/{s}/versions", {"schema": "{\"type\": \"record\", \"name\": \"X\"}"}, 422, 42201),
    ("POST", "/subjects/{s}/versions", {"schema": BASE, "schemaType": "PROTOBUF"}, 422, 42201),
    ("POST", "/subjects/{s}/versions", {"schema": record({"name": "host", "type": "long"})}, 409, 409),
    ("PUT", "/config/{s}", {"compatibility": "EVENTUALLY"}, 422, 42203),
    ("DELETE", "/subjects/{s}/versions/1?permanent=true", None, 404, 40407),
    ("GET", "/nowhere", None, 404, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD,
                         ids=[f"{m} {p} {c}" for m, p, _, _, c in BAD])
def test_bad_request__confluent_code_and_still_answering(http: httpx.Client, subject: str, method: str, path: str,
                                                         body: Any, status: int, code: int) -> None:
    assert http.post(f"/subjects/{subject}/versions", json={"schema": BASE}).status_code == 200
    resp = http.request(method, path.format(s=subject), json=body)
    assert (resp.status_code, resp.json()["error_code"]) == (status, code), resp.text
    assert resp.json()["message"]
    assert http.get(f"/subjects/{subject}/versions").json() == [1]


def test_malformed_json__400_and_still_answering(http: httpx.Client, subject: str) -> None:
    resp = http.post(f"/subjects/{subject}/versions", content=b'{"schema": "unterminated',
                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["message"]
    assert http.get("/").status_code == 200
