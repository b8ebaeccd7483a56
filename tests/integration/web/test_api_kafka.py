"""The UI's API on the real Kafka with a real worker and executor: the board's statuses, transitions,
alerts, actions joined with results, the trace of a rule firing end to end, silences that suppress
actions, events by id, metric windows, and the live stream resumed with Last-Event-ID."""

from __future__ import annotations

import time
from typing import Any

import httpx

from app.web.testing import UiStack
from tests.conftest import wait_until
from tests.integration.web.conftest import Api, unique, wait_for_actions, wait_for_status


def _kinds(node: dict[str, Any], depth: int = 0) -> list[tuple[int, str, str]]:
    """(depth, kind, rule or name) of every node of a trace tree, depth first."""
    r = node["record"]
    label = r.get("rule") or r.get("name") or r.get("status") or ""
    out = [(depth, node["kind"], str(label))]
    for child in node["children"]:
        out.extend(_kinds(child, depth + 1))
    return out


def test_status_transitions_and_alerts(stack: UiStack, api: Api) -> None:
    host = unique("db")
    first = stack.emit(host, "disk:/", kind="STATUS", severity=0, text="40% full", tags={"role": "db"})
    wait_for_status(api, host, "disk:/", "OK")
    second = stack.emit(host, "disk:/", kind="STATUS", severity=1, text="91% full", tags={"role": "db"})
    row = wait_for_status(api, host, "disk:/", "WARNING")
    assert row["text"] == "91% full" and row["tags"] == {"role": "db"} and row["rev"] > 0
    detail = wait_until(lambda: (d := api.get(f"/status/{host}/disk:%2F"))["transitions"] and d,
                        message="the transition in the identity's history")
    assert detail["status"]["state"] == "WARNING" and detail["current"]["last_event_id"] == second
    assert [(t["from_state"], t["to_state"], t["cause_event_id"]) for t in detail["transitions"]] == [
        ("OK", "WARNING", second)]
    alerts = api.get("/alerts", subject=host, since="10m")["alerts"]
    assert [a["cause_event_id"] for a in alerts] == [second]
    assert first != second
    page = api.get("/status", subject=f"{host[:3]}*", state="WARNING", tag="role=db")
    assert host in {r["subject"] for r in page["items"]} and page["counts"]["WARNING"] >= 1
    assert api.get("/members")["members"] == [] or all("host" in m for m in api.get("/members")["members"])


def test_actions_and_the_trace_of_a_firing_end_to_end(stack: UiStack, api: Api) -> None:
    host = unique("app")
    cause = stack.emit(host, "disk:/var", kind="STATUS", severity=2, text="97% full")
    actions = wait_for_actions(api, target=host, count=3)
    by_rule = sorted((a["rule"], a["type"], a["status"]) for a in actions)
    assert by_rule == [("diagnosis-recorded", "print", "SUCCEEDED"), ("disk-critical", "fire_event", "SUCCEEDED"),
                       ("disk-critical", "print", "SUCCEEDED")]
    fire = next(a for a in actions if a["type"] == "fire_event")
    assert fire["event_id"] == cause and fire["results"][0]["output"].startswith("event ")
    for target_id in (cause, fire["id"], fire["results"][0]["id"]):
        trace = api.get(f"/trace/{target_id}")
        assert trace["trace_id"] == cause
        shape = _kinds(trace["tree"])
        assert shape[0] == (0, "event", "disk:/var")
        assert (1, "firing", "disk-critical") in shape
        assert (3, "event", "diagnosis") in shape  # the follow-on event, under the fire_event action
        assert (4, "firing", "diagnosis-recorded") in shape
        assert [k for _, k, _ in shape].count("result") == 3
        assert {r["name"] for r in trace["rules"]} == {"disk-critical", "diagnosis-recorded"}
        assert [(a["to_state"], a["cause_event_id"]) for a in trace["alerts"]] == [("CRITICAL", cause)]
    found = api.get(f"/events/{cause}")
    assert found["event"]["subject"] == host and found["event"]["severity"] == 2
    assert httpx.get(f"{stack.ui_url}/api/v1/events/no-such-event").status_code == 404
    listed = api.get("/events", subject=host, name="*", since="10m", records="true")["events"]
    assert {e["name"] for e in listed} >= {"disk:/var", "diagnosis"}
    assert all(e["record"]["subject"] == host for e in listed)


def test_a_silence_suppresses_a_matching_action(stack: UiStack, api: Api) -> None:
    host = unique("maint")
    resp = httpx.post(f"{stack.ui_url}/api/v1/silences", json={"match": [f"subject={host}"], "duration": "1h",
                                                               "reason": "kernel upgrade"})
    assert resp.status_code == 201, resp.text
    silence = resp.json()

    def worker_knows() -> bool:
        active = httpx.get(f"{stack.worker_url}/rules").json()["silences"]["active"]
        return any(s["id"] == silence["id"] for s in active)

    wait_until(worker_knows, message="the worker's rules stage to read the silence")
    stack.emit(host, "disk:/", kind="STATUS", severity=2, text="99% full")
    suppressed = wait_for_actions(api, target=host, count=2, suppressed="true")
    assert {a["status"] for a in suppressed} == {"SUPPRESSED"}
    assert {a["suppressed_by"]["id"] for a in suppressed} == {silence["id"]}
    assert api.get("/actions", target=host, suppressed="false")["actions"] == []
    assert silence["id"] in {s["id"] for s in api.get("/silences")["silences"]}
    ended = httpx.delete(f"{stack.ui_url}/api/v1/silences/{silence['id']}").json()
    assert ended["active"] is False
    wait_until(lambda: silence["id"] not in {s["id"] for s in api.get("/silences")["silences"]},
               message="the silence to end")


def test_metric_windows_of_one_identity(stack: UiStack, api: Api) -> None:
    host = unique("web")
    # Event times close to now: earlier tests moved the partitions' event time on, and a window that
    # ended more than the grace period before that takes no more events.
    for i in range(12):
        stack.emit(host, "load", kind="METRIC", metrics={"load1": float(i)})

    def windows() -> list[Any] | None:
        found = api.get("/metrics", subject=host, name="load", metric="load1", window="10s", since="10m")["windows"]
        return found if sum(w["count"] for w in found) >= 12 else None

    found = wait_until(windows, message="the identity's 10 s windows")
    assert all(w["size_ms"] == 10_000 and w["metric"] == "load1" for w in found)
    assert max(w["max"] for w in found) == 11.0 and min(w["min"] for w in found) == 0.0
    latest = api.get("/metrics", subject=host, name="load", last=3)["windows"]
    assert latest and {w["size_ms"] for w in latest} <= {10_000, 60_000}


def test_the_stream_carries_changes_and_resumes(stack: UiStack, api: Api) -> None:
    host = unique("live")
    with httpx.stream("GET", f"{stack.ui_url}/api/v1/stream", params={"kinds": "status"}, timeout=60) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("retry:")
        event_id = ""
        stack.emit(host, "http", kind="STATUS", severity=2, text="down")
        deadline = time.monotonic() + 60
        seen = None
        for line in lines:
            if line.startswith("id: "):
                event_id = line[4:]
            if line.startswith("data: ") and f'"{host}"' in line:
                seen = line
                break
            assert time.monotonic() < deadline, "no status change for the new identity on the stream"
        assert seen is not None and '"CRITICAL"' in seen
    stack.emit(host, "http", kind="STATUS", severity=0, text="up again")
    wait_for_status(api, host, "http", "OK")
    with httpx.stream("GET", f"{stack.ui_url}/api/v1/stream", headers={"Last-Event-ID": event_id},
                      timeout=60) as resp:
        text = ""
        for line in resp.iter_lines():
            text += line + "\n"
            if f'"{host}"' in line and '"OK"' in line:
                break
        assert "event: reset" not in text  # resumed, not restarted
