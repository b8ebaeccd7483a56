"""The registry rides through a broker restart: reads answered from memory while Kafka is down,
writes refused with a retriable 50001 meanwhile, and both working again once Kafka is back,
without restarting the registry (its tail consumer and transactional writer recover by themselves)."""

from __future__ import annotations

import uuid

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from app.registry.server import start_registry_in_thread
from tests.conftest import wait_until
from tests.integration.outage import OutageStack
from tests.unit.registry.compat_cases import HOST, VALUE, record


def test_broker_restart__reads_from_memory_writes_refused_then_both_work_again(outage: OutageStack) -> None:
    assert outage.registry is not None
    url = outage.registry.url
    subject = f"outage-{uuid.uuid4().hex[:8]}-value"
    name = f"O{uuid.uuid4().hex[:8]}"
    v1, v2 = record(HOST, name=name), record(HOST, VALUE, name=name)
    with httpx.Client(base_url=url, timeout=60) as http:
        first = http.post(f"/subjects/{subject}/versions", json={"schema": v1}).json()["id"]
        http.put(f"/config/{subject}", json={"compatibility": "NONE"})

        outage.stop_kafka()
        try:
            latest = http.get(f"/subjects/{subject}/versions/latest")
            assert latest.status_code == 200 and latest.json()["id"] == first
            assert http.get(f"/schemas/ids/{first}").json()["schema"] == v1
            assert subject in http.get("/subjects").json()
            assert http.get(f"/config/{subject}").json() == {"compatibilityLevel": "NONE"}
            refused = http.post(f"/subjects/{subject}/versions", json={"schema": v2})
            assert refused.status_code == 500
            assert refused.json()["error_code"] == 50001 and "unreachable" in refused.json()["message"]
            # confluent-kafka's client sees a retriable error (5xx), not a verdict on the schema.
            sr = SchemaRegistryClient({"url": url, "max.retries": 0})
            try:
                sr.register_schema(subject, Schema(v2, "AVRO"))
                raise AssertionError("a write succeeded while Kafka was down")
            except SchemaRegistryError as exc:
                assert exc.http_status_code == 500 and exc.error_code == 50001
            # Reads still answered, after the refused write too.
            assert http.get(f"/subjects/{subject}/versions").json() == [1]
        finally:
            outage.start_kafka()

        def written() -> int | None:
            resp = http.post(f"/subjects/{subject}/versions", json={"schema": v2})
            return resp.json()["id"] if resp.status_code == 200 else None

        second = wait_until(written, timeout_s=120, interval_s=0.5, message="a registration after Kafka came back")
        assert second > first
        assert http.get(f"/subjects/{subject}/versions/latest").json()["id"] == second

    # The state is in Kafka, complete: a new instance answers the same and continues the ids.
    other = start_registry_in_thread(outage.settings, host="127.0.0.1", port=0)
    try:
        with httpx.Client(base_url=other.url, timeout=60) as http:
            assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]
            third = http.post(f"/subjects/{subject}-next/versions", json={"schema": record(HOST, name="Next")})
            assert third.json()["id"] > second
    finally:
        other.stop()

