"""The compatibility matrix through HTTP on the Kafka-backed registry: accepted, or 409 with the reason."""

from __future__ import annotations

import httpx
import pytest

from app.registry.client import RegistryClient, RegistryError
from tests.unit.registry.compat_cases import CASES, TRANSITIVE_CASES, CompatCase, TransitiveCase

HTTP_CASES = [c for c in CASES if c.name in {
    "add optional field with default", "add field without default", "remove field without default",
    "change type int to string", "widen int to long", "rename field with alias", "add enum symbol",
}]


@pytest.mark.parametrize("level", ["BACKWARD", "FORWARD", "FULL"])
@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_matrix__register_is_accepted_or_409_with_reason(client: RegistryClient, subject: str, level: str,
                                                          case: CompatCase) -> None:
    assert client.set_compatibility(level, subject) == level
    first = client.register(subject, case.old)
    report = client.check_compatibility(subject, case.new)
    assert report.is_compatible is case.expected(level), report.messages
    if case.expected(level):
        assert client.register(subject, case.new) != first
        assert client.versions(subject) == [1, 2]
        return
    with pytest.raises(RegistryError) as err:
        client.register(subject, case.new)
    assert (err.value.status, err.value.error_code) == (409, 409)
    assert any(f"'{name}'" in err.value.message for name in case.fields), err.value.message
    assert report.messages and all(m.startswith(level) for m in report.messages)
    assert client.versions(subject) == [1]


@pytest.mark.parametrize("case", TRANSITIVE_CASES, ids=lambda c: c.name)
def test_transitive__older_versions_count_too(client: RegistryClient, registry_url: str, subject: str,
                                              case: TransitiveCase) -> None:
    client.set_compatibility(f"{case.level}_TRANSITIVE", subject)
    for text in case.history:
        client.register(subject, text)
    # Checked against all versions (no version in the path), the transitive level sees version 1.
    with httpx.Client(base_url=registry_url, timeout=10) as http:
        body = http.post(f"/compatibility/subjects/{subject}/versions", params={"verbose": "true"},
                         json={"schema": case.new}).json()
    assert body["is_compatible"] is False
    assert any("version 1" in m for m in body["messages"]), body["messages"]
    # The client asks the same question unless told a version (what registration would decide).
    report = client.check_compatibility(subject, case.new)
    assert not report.is_compatible and any("version 1" in m for m in report.messages)
    # Against the latest version only (Confluent's "latest", whatever the level) it is fine.
    assert client.check_compatibility(subject, case.new, version="latest").is_compatible
    assert client.check_compatibility(subject, case.new, version=2).is_compatible
    with pytest.raises(RegistryError) as err:
        client.register(subject, case.new)
    assert err.value.error_code == 409 and f"'{case.field}'" in err.value.message
