"""The UI's SQLite history: alerts, actions joined with results and suppressions, metric windows,
offsets kept with the rows, retention, and bounded queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.web.store import HistoryStore, Retention


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = HistoryStore(tmp_path / "ui" / "history.sqlite3", Retention(history_ms=10_000, metrics_ms=5_000))
    yield s
    s.close()


def alert(i: str, time: int, subject: str = "web1", name: str = "load", to: str = "CRITICAL") -> dict[str, Any]:
    return {"id": i, "time": time, "subject": subject, "name": name, "from_state": "OK", "to_state": to,
            "severity": 2, "cause_event_id": f"ev-{i}", "text": "", "flapping": False, "tags": {}, "trace_id": None}


def action(i: str, time: int, rule: str = "r1", target: str = "web1", trace: str = "t1") -> dict[str, Any]:
    return {"id": i, "time": time, "rule": rule, "type": "print", "target": target, "params": "{}", "group_key": "",
            "event_id": trace, "trace_id": trace, "deadline": None, "signature": None}


def result(i: str, action_id: str, time: int, status: str) -> dict[str, Any]:
    return {"id": i, "action_id": action_id, "time": time, "status": status, "rule": "r1", "type": "print",
            "target": "web1", "attempts": 1, "started": None, "finished": time, "output": "", "error": "",
            "trace_id": None}


def test_alerts__newest_first_filtered_and_deduplicated(store: HistoryStore) -> None:
    with store.batch() as b:
        b.alert(alert("a1", 100))
        b.alert(alert("a2", 200, subject="db1", to="WARNING"))
        b.alert(alert("a3", 300))
        b.alert(alert("a1", 100))  # read again after a restart
    assert [c[0] for c in b.changes] == ["alert", "alert", "alert"]
    assert [a["id"] for a in store.alerts(since_ms=0, until_ms=1000)] == ["a3", "a2", "a1"]
    assert [a["id"] for a in store.alerts(since_ms=150, until_ms=1000)] == ["a3", "a2"]
    assert [a["id"] for a in store.alerts(since_ms=0, until_ms=1000, subject="web*")] == ["a3", "a1"]
    assert [a["id"] for a in store.alerts(since_ms=0, until_ms=1000, states=["WARNING"])] == ["a2"]
    assert [a["id"] for a in store.alerts(since_ms=0, until_ms=1000, limit=1)] == ["a3"]
    assert store.alert("a2")["subject"] == "db1"  # type: ignore[index]
    assert [a["id"] for a in store.alerts_caused_by(["ev-a1", "ev-x"])] == ["a1"]


def test_actions__joined_with_results_in_either_order(store: HistoryStore) -> None:
    with store.batch() as b:
        b.result(result("r0", "x2", 150, "FAILED"))  # a result read before its action (another topic)
        b.action(action("x1", 100))
        b.action(action("x2", 110, rule="r2", target="db1"))
        b.result(result("r1", "x1", 120, "SUCCEEDED"))
        b.result(result("r2", "x1", 130, "DUPLICATE"))
        b.suppressed({"action": action("x3", 140), "time": 141,
                      "silence": {"id": "s1", "reason": "maintenance", "until_ms": 999}})
    rows = {r.action["id"]: r for r in store.actions(since_ms=0, until_ms=1000)}
    assert rows["x1"].status == "SUCCEEDED" and len(rows["x1"].results) == 2
    assert rows["x2"].status == "FAILED"
    assert rows["x3"].status == "SUPPRESSED" and rows["x3"].suppressed == {"id": "s1", "reason": "maintenance",
                                                                          "until_ms": 999}
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, states=["FAILED"])] == ["x2"]
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, suppressed=True)] == ["x3"]
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, suppressed=False)] == ["x2", "x1"]
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, rule="r2")] == ["x2"]
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, target="web?")] == ["x3", "x1"]
    assert [r.action["id"] for r in store.actions_of_trace("t1")] == ["x1", "x2", "x3"]
    assert store.result("r1")["action_id"] == "x1"  # type: ignore[index]
    assert rows["x1"].to_dict()["params"] == {}


HELD = {"guard": "dependency", "dependency": "rack-switch", "identity": "sw1/ping", "state": "CRITICAL",
        "since_ms": 90, "detail": "dependency rack-switch: sw1/ping is CRITICAL since ..."}


@pytest.mark.parametrize("suppressed_first", [True, False])
def test_action_held_by_a_dependency_then_released__row_is_the_sent_action(store: HistoryStore,
                                                                           suppressed_first: bool) -> None:
    with store.batch() as b:
        if suppressed_first:
            b.suppressed({"action": action("x1", 100), "time": 101, "dependency": HELD})
        b.action(action("x1", 100))
        if not suppressed_first:  # the tailers read actions and actions-suppressed apart
            b.suppressed({"action": action("x1", 100), "time": 101, "dependency": HELD})
        b.result(result("r1", "x1", 300, "SUCCEEDED"))
        b.suppressed({"action": action("x2", 100, target="web2"), "time": 101, "dependency": HELD})
    rows = {r.action["id"]: r for r in store.actions(since_ms=0, until_ms=1000)}
    assert rows["x1"].status == "SUCCEEDED" and rows["x1"].suppressed is None and rows["x1"].held == HELD
    assert rows["x1"].to_dict()["held_by"] == HELD
    assert rows["x2"].status == "SUPPRESSED" and rows["x2"].suppressed == HELD and rows["x2"].held is None
    assert [r.action["id"] for r in store.actions(since_ms=0, until_ms=1000, suppressed=True)] == ["x2"]


def test_windows__range_of_one_identity(store: HistoryStore) -> None:
    with store.batch() as b:
        for start in range(0, 60_000, 10_000):
            b.window({"subject": "web1", "name": "load", "metric": "load1", "size_ms": 10_000,
                      "window_start": start, "window_end": start + 10_000, "count": 2, "sum": 2.0, "min": 0.5,
                      "max": 1.5, "mean": 1.0, "last": 1.5, "p50": 1.0, "p95": 1.5, "p99": 1.5, "sketch": b"x"})
    found = store.windows(subject="web1", name="load", metric=None, size_ms=None, since_ms=10_000,
                          until_ms=30_000, limit=100)
    assert [w["window_start"] for w in found] == [10_000, 20_000, 30_000]
    assert "sketch" not in found[0]
    assert store.windows(subject="web1", name="load", metric="other", size_ms=None, since_ms=0, until_ms=10**9,
                         limit=100) == []
    assert len(store.windows(subject="web1", name="load", metric=None, size_ms=10_000, since_ms=0, until_ms=10**9,
                             limit=2)) == 2
    assert store.metric_names("web1", "load") == ["load1"]


def test_offsets_and_retention(store: HistoryStore) -> None:
    with store.batch() as b:
        b.offset("alerts", 0, 42)
        b.offset("alerts", 1, 7)
        b.alert(alert("old", 1_000))
        b.alert(alert("new", 19_000))
    assert store.offsets("alerts") == {0: 42, 1: 7}
    deleted = store.prune(now_ms=20_000)
    assert deleted["alerts"] == 1
    assert [a["id"] for a in store.alerts(since_ms=0, until_ms=10**9)] == ["new"]
    assert store.counts()["alerts"] == 1


def test_batch__rolls_back_on_error(store: HistoryStore) -> None:
    with pytest.raises(RuntimeError), store.batch() as b:
        b.alert(alert("a1", 100))
        b.offset("alerts", 0, 1)
        raise RuntimeError("the tailer failed mid-batch")
    assert store.alerts(since_ms=0, until_ms=10**9) == [] and store.offsets("alerts") == {}
