"""Joining actions with results, and trace trees (pure: records as the topics would hold them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.actions.join import join_actions
from app.actions.trace import TraceNode, TraceRecords, build_trace, render_tree


def ev(id_: str, subject: str, name: str, time: int, trace_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "subject": subject, "name": name, "time": time, "severity": 0, "metrics": {},
            "tags": {}, "origin": "", "trace_id": trace_id, **extra}


def act(id_: str, event_id: str, trace_id: str, type_: str = "print", rule: str = "r", time: int = 0,
        target: str = "web1") -> dict[str, Any]:
    return {"id": id_, "time": time, "rule": rule, "type": type_, "target": target, "params": "{}",
            "group_key": "web1/load", "event_id": event_id, "trace_id": trace_id, "deadline": None,
            "signature": None}


def res(id_: str, action_id: str, status: str = "SUCCEEDED", time: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "action_id": action_id, "status": status, "time": time, "attempts": 1, "output": "",
            "error": "", **extra}


@pytest.fixture
def records() -> TraceRecords:
    events = [ev("e0", "web1", "load", 0), ev("e1", "lb", "reconfig", 5, trace_id="e0", tags={"action_id": "a2"}),
              ev("e2", "lb", "audit", 6, trace_id="e0"), ev("x", "other", "load", 0)]
    actions = [act("a1", "e0", "e0"), act("a2", "e0", "e0", "fire_event"),
               act("a3", "e1", "e0", rule="reconfig-mail", time=5), act("a2", "e0", "e0", "fire_event"),
               act("ax", "x", "x")]
    results = [res("r1", "a1"), res("r2", "a2", time=2), res("r2d", "a2", "DUPLICATE", time=3),
               res("r3", "a3", "FAILED", error="smtp: connection refused\ndetails"), res("rx", "ax")]
    suppressed = [{"action": act("a4", "e1", "e0", "email", rule="reconfig-mail", time=5),
                   "silence": {"id": "s1", "reason": "maintenance"}, "time": 5}]
    return TraceRecords(events, actions, results, suppressed)


def test_join__each_action_once_with_its_results__duplicates_do_not_hide_status() -> None:
    rows = join_actions([act("a1", "e", "e"), act("a2", "e", "e"), act("a1", "e", "e")],
                        [res("r2", "a2", "FAILED", time=1), res("r2b", "a2", "DUPLICATE", time=2)])
    assert [(r.action["id"], r.status) for r in rows] == [("a1", "PENDING"), ("a2", "FAILED")]
    assert rows[1].to_dict()["params"] == {} and len(rows[1].results) == 2


@pytest.mark.parametrize("start", ["e0", "a1", "r3", "e1", "a4", "e2"])
def test_trace__same_tree_from_any_id_in_it(records: TraceRecords, start: str) -> None:
    tree = build_trace(start, records)
    assert tree is not None and tree.id == "e0"
    shape = json.dumps(tree.to_dict())
    assert "ax" not in shape and '"x"' not in shape  # other traces stay out

    def outline(node: TraceNode, depth: int = 0) -> Iterator[tuple[int, str, str]]:
        yield depth, node.kind, node.id
        for child in node.children:
            yield from outline(child, depth + 1)

    assert list(outline(tree)) == [
        (0, "event", "e0"),
        (1, "firing", "r@0"),
        (2, "action", "a1"), (3, "result", "r1"),
        (2, "action", "a2"), (3, "result", "r2"), (3, "result", "r2d"),
        (3, "event", "e1"),  # names a2 in its tags: placed under it
        (4, "firing", "reconfig-mail@5"),
        (5, "action", "a3"), (6, "result", "r3"),
        (5, "action", "a4"),
        (1, "event", "e2"),  # same trace, names no action: under the root
    ]


def test_trace__text_shows_status_errors_and_silences(records: TraceRecords) -> None:
    tree = build_trace("a1", records)
    assert tree is not None
    text = "\n".join(render_tree(tree))
    assert text.splitlines()[0].startswith("event e0 web1/load at 1970-01-01T00:00:00.000Z")
    assert "action a2 fire_event -> web1 SUCCEEDED" in text
    assert "result r3 FAILED after 1 attempt(s)" in text and "smtp: connection refused" in text
    assert "details" not in text  # first line of an error only
    assert "action a4 email -> web1 SUPPRESSED by silence s1 (maintenance)" in text


def test_trace__root_event_outside_the_range_read(records: TraceRecords) -> None:
    records.events = []
    tree = build_trace("r1", records)
    assert tree is not None and tree.id == "e0" and "not found" in tree.note
    assert [c.kind for c in tree.children] == ["firing", "event"]  # a3/a4's cause e1 is missing too


def test_trace__unknown_id() -> None:
    assert build_trace("nope", TraceRecords([], [], [])) is None


def test_held_by_a_dependency_then_released__listed_as_sent_with_what_held_it() -> None:
    from app.actions.join import held_text, join_actions, suppression_text

    held = {"guard": "dependency", "dependency": "rack-switch", "detail": "dependency rack-switch: sw1/ping is "
            "CRITICAL since 2027-01-15T08:00:00.000Z"}
    sent = {"id": "a1", "time": 5, "rule": "host-down", "target": "h1"}
    still = {"id": "a2", "time": 5, "rule": "host-down", "target": "h2"}
    rows = {r.action["id"]: r for r in join_actions([sent], [], [{"action": sent, "dependency": held},
                                                                  {"action": still, "dependency": held}])}
    assert rows["a1"].status == "PENDING" and rows["a1"].held == held and rows["a1"].suppressed is None
    assert rows["a2"].status == "SUPPRESSED" and rows["a2"].suppressed == held
    assert suppression_text(held) == "by dependency rack-switch: sw1/ping is CRITICAL since 2027-01-15T08:00:00.000Z"
    assert held_text(held).startswith("(held by dependency rack-switch:") and held_text(held).endswith("released)")
