"""The HTTP API without Kafka: the UI server's aiohttp application with its tailers not started, a
fake worker API on loopback, and a silence writer that keeps what it is given."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.config import load_settings
from app.rules.silences import Silence
from app.web.config import load_ui_config
from app.web.ingest import IngestBatch
from app.web.server import UiServer

NOW = int(time.time() * 1000)


class KeptSilences:
    """Stands in for the Kafka writer: what the API would have written."""

    def __init__(self) -> None:
        self.written: list[Silence] = []

    async def write(self, silence: Silence) -> None:
        self.written.append(silence)

    def close(self) -> None:
        pass


def fake_worker() -> web.Application:
    """The query routes of one worker holding web1/load."""
    app = web.Application()
    status = {"subject": "web1", "name": "load", "state": "OK", "since": NOW - 60_000, "last_seen": NOW - 1000,
              "last_event_id": "e9", "text": "fresh", "event_count": 99, "transition_count": 1, "flapping": False,
              "ttl": None, "tags": {"role": "web"}, "expected_by": None}

    async def statuses(request: web.Request) -> web.Response:
        wanted = request.query.get("name", "*") in ("*", "load") and request.query.get("subject", "*") in ("*", "web1")
        return web.json_response({"statuses": [status] if wanted else [], "partitions": [0]})

    async def windows(request: web.Request) -> web.Response:
        return web.json_response({"windows": [
            {"subject": "web1", "name": "load", "metric": "load1", "window_start": NOW - NOW % 10_000,
             "size_ms": 10_000, "window_end": NOW - NOW % 10_000 + 10_000, "count": 3, "sum": 6.0, "min": 1.0,
             "max": 3.0, "mean": 2.0, "last": 3.0, "p50": 2.0, "p95": 3.0, "p99": 3.0, "closed": False}],
            "partitions": [0]})

    async def find(request: web.Request) -> web.Response:
        return web.json_response({"events": [{"id": "e9", "topic": "events", "partition": 0, "offset": 5,
                                              "time": NOW - 1000, "type": "vigil.Event", "subject": "web1",
                                              "name": "load"}], "partitions": [0]})

    async def get_event(request: web.Request) -> web.Response:
        return web.json_response({"error": "not indexed", "partitions": [0]}, status=404)

    async def rules(request: web.Request) -> web.Response:
        return web.json_response({"rules": [{"name": "r1", "location": "rules/a.yaml:3", "trigger": "match"}],
                                  "errors": []})

    app.router.add_get("/status", statuses)
    app.router.add_get("/windows", windows)
    app.router.add_get("/events/find", find)
    app.router.add_get("/events/get", get_event)
    app.router.add_get("/rules", rules)
    return app


Scenario = Callable[[TestClient, UiServer], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, **ui: Any) -> None:
    async def main() -> None:
        worker = TestServer(fake_worker(), host="127.0.0.1")
        await worker.start_server()
        settings = load_settings(kafka_bootstrap="127.0.0.1:1", schema_registry_url="http://127.0.0.1:1",
                                 state_dir=tmp_path / "state")
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "a.yaml").write_text("rules:\n  - name: r1\n    match: {name: load}\n"
                                      "    actions:\n      - print: {}\n")
        config = load_ui_config(settings, env={}, workers=[str(worker.make_url("")).rstrip("/")], **ui)
        server = UiServer(settings, config, rules_dir=rules)
        server.ctx.silences = KeptSilences()  # type: ignore[assignment]
        server.hub.bind(asyncio.get_running_loop())
        server.hub.apply(IngestBatch(live=True))  # ready, as once the topics were read
        client = TestClient(TestServer(server.app, host="127.0.0.1"))
        await client.start_server()
        try:
            await scenario(client, server)
        finally:
            await client.close()
            await worker.close()
            await server.ctx.workers.close()
            server.ctx.backtests.close()
            server.store.close()

    asyncio.run(main())


def statuses(server: UiServer, *records: dict[str, Any]) -> None:
    server.hub.apply(IngestBatch(statuses=[(r["subject"], r["name"], r) for r in records]))


def status(subject: str, name: str, state: str = "OK") -> dict[str, Any]:
    return {"subject": subject, "name": name, "state": state, "since": NOW, "last_seen": NOW, "last_event_id": "",
            "text": "", "event_count": 1, "transition_count": 0, "flapping": False, "ttl": None, "tags": {}}


def test_status__filters_pages_and_caps(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        statuses(server, *(status(f"web{i:02}", "load", "CRITICAL" if i % 10 == 0 else "OK") for i in range(50)))
        page = await (await client.get("/api/v1/status", params={"state": "CRITICAL", "limit": "2"})).json()
        assert page["total"] == 5 and [r["subject"] for r in page["items"]] == ["web00", "web10"]
        assert page["counts"]["OK"] == 45 and page["source"] == "index" and page["ready"] is True
        capped = await (await client.get("/api/v1/status", params={"limit": "1000000"})).json()
        assert capped["limit"] == 1000 and len(capped["items"]) == 50
        second = await (await client.get("/api/v1/status", params={"page": "2", "limit": "20"})).json()
        assert second["offset"] == 20 and second["items"][0]["subject"] == "web20"
        fresh = await (await client.get("/api/v1/status", params={"source": "workers"})).json()
        assert [r["text"] for r in fresh["items"]] == ["fresh"]
        groups = await (await client.get("/api/v1/status/groups", params={"group_by": "name", "per_line": "20"})).json()
        assert groups["groups"] == 1 and groups["total_lines"] == 4 and groups["lines"][0]["kind"] == "group"

    run(tmp_path, scenario)


@pytest.mark.parametrize(("query", "parameter"), [
    ({"state": "BROKEN"}, "state"), ({"sort": "colour"}, "sort"), ({"limit": "0"}, "limit"),
    ({"offset": "-1"}, "offset"), ({"tag": "novalue"}, "tag"), ({"stat": "OK"}, "stat"),
    ({"source": "disk"}, "source"), ({"flapping": "perhaps"}, "flapping")])
def test_status__bad_filters_are_400_naming_the_parameter(tmp_path: Path, query: dict[str, str],
                                                           parameter: str) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        resp = await client.get("/api/v1/status", params=query)
        body = await resp.json()
        assert resp.status == 400 and body["parameter"] == parameter and body["error"].startswith(parameter)

    run(tmp_path, scenario)


def test_unknown_ids_and_paths_are_404_json(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        for path in ("/api/v1/nothing/here", "/api/v1/status/nobody/nothing", "/api/v1/backtests/nope",
                     "/api/v1/events/no-such-event", "/api/v1/trace/no-such-id"):
            resp = await client.get(path)
            assert resp.status == 404, path
            assert "error" in await resp.json()
        resp = await client.delete("/api/v1/silences/nope")
        assert resp.status == 404 and "no silence" in (await resp.json())["error"]
        resp = await client.put("/api/v1/status")
        assert resp.status == 405 and "not allowed" in (await resp.json())["error"]

    run(tmp_path, scenario)


def test_identity__status_fresh_record_and_transitions(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        statuses(server, status("web1", "load", "CRITICAL"))
        with server.store.batch() as b:
            b.alert({"id": "a1", "time": NOW - 5000, "subject": "web1", "name": "load", "from_state": "OK",
                     "to_state": "CRITICAL", "severity": 2, "cause_event_id": "e1", "text": "", "flapping": False,
                     "tags": {}, "trace_id": None})
        body = await (await client.get("/api/v1/status/web1/load")).json()
        assert body["status"]["state"] == "CRITICAL" and body["current"]["text"] == "fresh"
        assert [a["id"] for a in body["transitions"]] == ["a1"]
        metrics = await (await client.get("/api/v1/metrics", params={"subject": "web1", "name": "load",
                                                                      # NOW was taken at import, maybe long ago
                                                                      "since": str(NOW - 60_000)})).json()
        assert metrics["metrics"] == ["load1"] and metrics["windows"][0]["closed"] is False
        bad = await client.get("/api/v1/metrics", params={"subject": "web1", "name": "load", "window": "7s"})
        assert bad.status == 400 and (await bad.json())["parameter"] == "window"
        missing = await client.get("/api/v1/metrics", params={"name": "load"})
        assert missing.status == 400 and (await missing.json())["parameter"] == "subject"
        events = await (await client.get("/api/v1/events", params={"subject": "web1"})).json()
        assert [e["id"] for e in events["events"]] == ["e9"]

    run(tmp_path, scenario)


def test_silences__token_required_for_changes(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        body = {"match": ["subject=web1"], "duration": "2h", "reason": "kernel upgrade"}
        assert (await client.post("/api/v1/silences", json=body)).status == 401
        assert (await client.get("/api/v1/silences")).status == 200  # reads stay open
        auth = {"Authorization": "Bearer s3cret"}
        resp = await client.post("/api/v1/silences", json=body, headers=auth)
        added = await resp.json()
        assert resp.status == 201 and added["reason"] == "kernel upgrade" and added["active"] is True
        listed = await (await client.get("/api/v1/silences")).json()
        assert [s["id"] for s in listed["silences"]] == [added["id"]]
        ended = await (await client.delete(f"/api/v1/silences/{added['id']}", headers=auth)).json()
        assert ended["active"] is False
        assert (await (await client.get("/api/v1/silences")).json())["silences"] == []
        assert len((await (await client.get("/api/v1/silences", params={"all": "true"})).json())["silences"]) == 1
        written = server.ctx.silences.written  # type: ignore[attr-defined]
        assert [s.active(int(time.time() * 1000)) for s in written] == [True, False]
        for bad, parameter in (({"duration": "2h"}, "reason"), ({"reason": "x"}, "duration"),
                               ({"reason": "x", "duration": "soon"}, "duration"),
                               ({"reason": "x", "duration": "1h", "match": {"subject": "web1"}}, "match"),
                               ({"reason": "x", "duration": "1h", "match": ["subject"]}, "match"),
                               ({"reason": "x", "duration": "1h", "match": ["colour=red"]}, "match"),
                               ({"reason": "x", "duration": "1h"}, "match"),
                               ({"reason": "x", "duration": "1h", "colour": "red"}, "colour")):
            resp = await client.post("/api/v1/silences", json=bad, headers=auth)
            assert resp.status == 400 and (await resp.json())["parameter"] == parameter, bad
        resp = await client.post("/api/v1/silences", data="reason=x", headers={**auth, "Content-Type": "text/plain"})
        assert resp.status == 415

    run(tmp_path, scenario, token="s3cret")


def test_reads_need_the_token_when_configured(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        assert (await client.get("/api/v1/status")).status == 401
        assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer t0ken"})).status == 200
        assert (await client.get("/api/v1/openapi.json")).status == 200
        assert (await client.get("/healthz")).status == 200
        stream = await client.get("/api/v1/stream", params={"access_token": "t0ken"})
        assert stream.status == 200
        stream.close()

    run(tmp_path, scenario, token="t0ken", auth_reads=True)


def test_cors_is_closed_unless_configured(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        resp = await client.get("/api/v1/status", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in resp.headers

    run(tmp_path, scenario)

    async def allowed(client: TestClient, server: UiServer) -> None:
        resp = await client.get("/api/v1/status", headers={"Origin": "https://ops.example"})
        assert resp.headers.get("Access-Control-Allow-Origin") == "https://ops.example"

    run(tmp_path, allowed, cors_origins=["https://ops.example"])


async def read_events(resp: Any, count: int) -> list[tuple[str, str, str]]:
    """(event, id, data) of the next `count` events of a stream."""
    out: list[tuple[str, str, str]] = []
    fields: dict[str, str] = {}
    while len(out) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line == "":
            if "event" in fields:
                out.append((fields["event"], fields.get("id", ""), fields.get("data", "")))
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return out


def test_stream__live_changes_and_resume_with_last_event_id(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        resp = await client.get("/api/v1/stream", params={"kinds": "status,alert"})
        hello = await read_events(resp, 1)
        assert hello[0][0] == "hello"
        statuses(server, status("web1", "load", "CRITICAL"))
        server.hub.apply(IngestBatch(changes=[("action", {"id": "x"}), ("alert", {"id": "a1"})]))
        (kind1, id1, data1), (kind2, _, _) = await read_events(resp, 2)
        assert kind1 == "status" and '"CRITICAL"' in data1 and kind2 == "alert"
        resp.close()
        statuses(server, status("web2", "load", "WARNING"))  # while it was away
        again = await client.get("/api/v1/stream", headers={"Last-Event-ID": id1})
        events = await read_events(again, 4)
        assert [e[0] for e in events] == ["hello", "action", "alert", "status"]
        assert '"web2"' in events[3][2]
        again.close()
        stale = await client.get("/api/v1/stream", headers={"Last-Event-ID": "another-process-5"})
        assert [e[0] for e in await read_events(stale, 2)] == ["reset", "hello"]
        stale.close()
        bad = await client.get("/api/v1/stream", params={"kinds": "gossip"})
        assert bad.status == 400

    run(tmp_path, scenario, stream_buffer=100)


def test_backtest__posted_rules_are_checked_first(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        broken = {"from": "-1h", "files": {"bad.yaml": "rules:\n  - name: x\n    when: {gt: 1}\n"}}
        resp = await client.post("/api/v1/backtests", json=broken)
        body = await resp.json()
        assert resp.status == 400 and body["parameter"] == "files" and body["errors"]
        assert any("bad.yaml" in e for e in body["errors"])
        resp = await client.post("/api/v1/backtests", json={"from": "-30d"})
        assert resp.status == 400 and (await resp.json())["parameter"] == "to"
        resp = await client.post("/api/v1/backtests", json={"from": "soon"})
        assert resp.status == 400 and (await resp.json())["parameter"] == "from"
        rules = await (await client.get("/api/v1/rules")).json()
        assert list(rules["files"]) == ["a.yaml"] and rules["rules"][0]["name"] == "r1"

    run(tmp_path, scenario)


def test_openapi_and_the_ui_page(tmp_path: Path) -> None:
    async def scenario(client: TestClient, server: UiServer) -> None:
        doc = await (await client.get("/api/v1/openapi.json")).json()
        assert doc["openapi"].startswith("3.0") and "/status/{subject}/{name}" in doc["paths"]
        page = await client.get("/identity/web1/load")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "Vigil" in await page.text()

    run(tmp_path, scenario)


def test_the_workers_are_asked_with_vigils_api_token() -> None:
    """The workers' query routes take VIGIL_API_TOKEN when set: the UI server sends it."""
    from app.web.workers import WorkersClient, WorkersError

    token = b"0123456789abcdef0123"

    async def statuses(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {token.decode()}":
            return web.json_response({"error": "a valid token is required"}, status=401)
        return web.json_response({"statuses": [], "partitions": [0]})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/status", statuses)
        worker = TestServer(app, host="127.0.0.1")
        await worker.start_server()
        url = str(worker.make_url("")).rstrip("/")
        with_token, without = WorkersClient([url], token=token), WorkersClient([url])
        try:
            assert await with_token.statuses(subject="*", name="*") == ([], [])
            with pytest.raises(WorkersError, match="VIGIL_API_TOKEN"):
                await without.statuses(subject="*", name="*")
        finally:
            await with_token.close()
            await without.close()
            await worker.close()

    asyncio.run(main())
