"""The board's status index: filters, counts, order and pages over every identity; grouped lines."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.web.statusindex import STATES, StatusFilter, StatusIndex


def status(subject: str, name: str, state: str = "OK", *, since: int = 0, flapping: bool = False,
           **tags: str) -> dict[str, Any]:
    return {"subject": subject, "name": name, "state": state, "since": since, "last_seen": since,
            "flapping": flapping, "tags": tags, "text": ""}


def index_of(*records: dict[str, Any]) -> StatusIndex:
    index = StatusIndex()
    for rev, r in enumerate(records, 1):
        index.apply(r["subject"], r["name"], r, rev)
    return index


def keys(rows: Any) -> list[tuple[str, str]]:
    return [(r.subject, r.name) for r in rows]


def test_apply__replaces_and_deletes() -> None:
    index = index_of(status("web1", "load"), status("web2", "load"))
    index.apply("web1", "load", status("web1", "load", "CRITICAL"), 7)
    assert index.get("web1", "load").state == "CRITICAL"  # type: ignore[union-attr]
    assert index.get("web1", "load").rev == 7  # type: ignore[union-attr]
    index.apply("web2", "load", None, 8)
    assert index.get("web2", "load") is None
    assert len(index) == 1 and index.revision == 8
    index.apply("nobody", "x", None, 9)  # deleting what is not there changes nothing


def test_query__filters_count_states_ignoring_the_state_filter() -> None:
    index = index_of(status("web1", "load", "CRITICAL", role="web"), status("web2", "load", "OK", role="web"),
                     status("db1", "disk", "WARNING", role="db"), status("web3", "disk", "CRITICAL", flapping=True))
    page = index.query(StatusFilter(subject="web*", states=frozenset({"CRITICAL"})))
    assert keys(page.rows) == [("web1", "load"), ("web3", "disk")]
    assert page.total == 2
    assert page.counts == {"OK": 1, "WARNING": 0, "CRITICAL": 2, "UNKNOWN": 0, "EXPIRED": 0}
    assert page.flapping == 1
    assert keys(index.query(StatusFilter(tags={"role": "d*"})).rows) == [("db1", "disk")]
    assert keys(index.query(StatusFilter(tags={"missing": "*"})).rows) == []
    assert keys(index.query(StatusFilter(flapping=True)).rows) == [("web3", "disk")]
    assert keys(index.query(StatusFilter(subject="web1")).rows) == [("web1", "load")]
    assert keys(index.query(StatusFilter(name="lo?d")).rows) == [("web1", "load"), ("web2", "load")]


def test_query__orders() -> None:
    index = index_of(status("a", "x", "OK", since=3), status("b", "x", "CRITICAL", since=1),
                     status("c", "x", "EXPIRED", since=2), status("d", "x", "WARNING", since=4),
                     status("e", "x", "CRITICAL", since=5))
    assert [r.subject for r in index.query(StatusFilter(), sort="state").rows] == ["b", "e", "c", "d", "a"]
    assert [r.subject for r in index.query(StatusFilter(), sort="-since").rows] == ["e", "d", "a", "c", "b"]
    assert [r.subject for r in index.query(StatusFilter(), sort="-subject").rows] == ["e", "d", "c", "b", "a"]
    with pytest.raises(ValueError):
        index.query(StatusFilter(), sort="colour")


def test_query__pages() -> None:
    index = index_of(*(status(f"h{i:03}", "x") for i in range(250)))
    page = index.query(StatusFilter(), offset=200, limit=100)
    assert page.total == 250 and len(page.rows) == 50 and page.rows[0].subject == "h200"
    assert index.query(StatusFilter(), offset=1000, limit=100).rows == []


def test_group_lines__header_then_rows_per_line_worst_group_first() -> None:
    index = index_of(status("web1", "a"), status("web1", "b"), status("web1", "c", "CRITICAL"),
                     status("db1", "a", role="db"), status("db1", "b", "WARNING", role="db"))
    lines, total, groups = index.group_lines(StatusFilter(), group_by="subject", per_line=2, group_order="worst",
                                             sort="state")
    assert groups == 2 and total == 5
    shape = [(line.group, line.header, [r.name for r in line.rows]) for line in lines]
    assert shape == [("web1", True, []), ("web1", False, ["c", "a"]), ("web1", False, ["b"]),
                     ("db1", True, []), ("db1", False, ["b", "a"])]
    header = lines[0].to_json()
    assert header == {"kind": "group", "group": "web1", "size": 3, "counts": {"OK": 2, "CRITICAL": 1},
                      "worst": "CRITICAL"}
    by_tag, _, _ = index.group_lines(StatusFilter(), group_by="tag:role", per_line=10)
    assert [(line.group, line.header) for line in by_tag] == [("", True), ("", False), ("db", True), ("db", False)]
    for offset in range(6):  # any window of lines is the same lines as the whole
        for limit in range(1, 4):
            window, _, _ = index.group_lines(StatusFilter(), group_by="subject", per_line=2, group_order="worst",
                                             sort="state", offset=offset, limit=limit)
            assert [(w.group, w.header, [r.name for r in w.rows]) for w in window] == shape[offset:offset + limit]


identities = st.tuples(st.sampled_from(["web1", "web2", "web10", "db1", "d*b", "x"]),
                       st.sampled_from(["load", "disk:/", "disk:/var", "heartbeat"]),
                       st.sampled_from(STATES), st.sampled_from(["web", "db", ""]))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(identities, max_size=40),
       subject=st.sampled_from(["*", "web*", "web1", "d*", "d[*]b", "?b1", "web1?", "x"]),
       name=st.sampled_from(["*", "disk*", "load"]), states=st.sets(st.sampled_from(STATES), max_size=2),
       role=st.sampled_from([None, "web", "d*"]))
def test_query__is_the_same_as_filtering_everything(rows: list[tuple[str, str, str, str]], subject: str, name: str,
                                                    states: set[str], role: str | None) -> None:
    """The prefix scan finds exactly what a full scan with fnmatch would."""
    records = {(s, n): status(s, n, st_, **({"role": r} if r else {})) for s, n, st_, r in rows}
    index = index_of(*records.values())
    flt = StatusFilter(subject=subject, name=name, states=frozenset(states), tags={"role": role} if role else {})
    expected = sorted(k for k, r in records.items()
                      if fnmatch.fnmatchcase(k[0], subject) and fnmatch.fnmatchcase(k[1], name)
                      and (not states or r["state"] in states)
                      and (role is None or ("role" in r["tags"] and fnmatch.fnmatchcase(r["tags"]["role"], role))))
    assert keys(index.query(flt, limit=1000).rows) == expected


changes = st.lists(st.tuples(st.sampled_from(["a", "b", "web1", "web2", "x*y"]), st.sampled_from(["load", "disk", "h"]),
                             st.one_of(st.none(), st.sampled_from(STATES)), st.integers(0, 5), st.integers(0, 5),
                             st.booleans(), st.sampled_from(["web", "db"])), max_size=40)
sorts = st.sampled_from(["subject", "-subject", "name", "-name", "state", "-state", "since", "-since", "last_seen",
                         "-last_seen"])


@settings(max_examples=300, deadline=None)
@given(ops=changes, states=st.sets(st.sampled_from(STATES), max_size=3), sort=sorts, offset=st.integers(0, 12),
       limit=st.integers(1, 8), subject=st.sampled_from(["*", "web*", "a"]), role=st.sampled_from([None, "db"]))
def test_pages_after_any_changes_are_a_full_sort_of_everything(ops: list[Any], states: set[str], sort: str,
                                                              offset: int, limit: int, subject: str,
                                                              role: str | None) -> None:
    """Every index kept across replacements and deletions answers what sorting all rows would."""
    index = StatusIndex()
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for rev, (s, n, state, since, seen, flapping, r) in enumerate(ops, 1):
        record = None if state is None else {**status(s, n, state, since=since, flapping=flapping, role=r),
                                             "last_seen": seen}
        index.apply(s, n, record, rev)
        if record is None:
            current.pop((s, n), None)
        else:
            current[(s, n)] = record
    assert len(index) == len(current)
    flt = StatusFilter(subject=subject, states=frozenset(states), tags={"role": role} if role else {})
    page = index.query(flt, sort=sort, offset=offset, limit=limit)
    chosen = [r for k, r in current.items() if fnmatch.fnmatchcase(k[0], subject)
              and (role is None or r["tags"].get("role") == role)]
    rank = {s: i for i, s in enumerate(["CRITICAL", "EXPIRED", "UNKNOWN", "WARNING", "OK"])}
    field = sort.lstrip("-")
    keyed = {"subject": lambda r: (r["subject"], r["name"]), "name": lambda r: (r["name"], r["subject"]),
             "state": lambda r: (rank[r["state"]], r["subject"], r["name"]),
             "since": lambda r: (r["since"], r["subject"], r["name"]),
             "last_seen": lambda r: (r["last_seen"], r["subject"], r["name"])}[field]
    expected = sorted((r for r in chosen if not states or r["state"] in states), key=keyed,
                      reverse=sort.startswith("-"))
    assert [(r.subject, r.name) for r in page.rows] == [(r["subject"], r["name"]) for r in
                                                        expected[offset:offset + limit]]
    assert page.total == len(expected)
    assert page.counts == {s: sum(1 for r in chosen if r["state"] == s) for s in STATES}
    assert page.flapping == sum(1 for r in chosen if r["flapping"])


@settings(max_examples=200, deadline=None)
@given(before=changes, after=changes, states=st.sets(st.sampled_from(STATES), max_size=3), inside=st.booleans(),
       subject=st.sampled_from(["*", "web*", "a"]), name=st.sampled_from(["*", "disk*"]),
       role=st.sampled_from([None, "db"]))
def test_tally__kept_across_changes_is_what_a_full_scan_finds(before: list[Any], after: list[Any], states: set[str],
                                                              inside: bool, subject: str, name: str,
                                                              role: str | None) -> None:
    """A filter's tally, first built from the rows then kept as rows change, is the full scan's answer."""
    index = StatusIndex()
    current: dict[tuple[str, str], dict[str, Any]] = {}
    flt = StatusFilter(subject=subject, name=name, tags={"role": role} if role else {})
    wanted = frozenset(states)

    def apply(ops: list[Any], first_rev: int) -> None:
        for rev, (s, n, state, since, _seen, flapping, r) in enumerate(ops, first_rev):
            record = None if state is None else status(s, n, state, since=since, flapping=flapping, role=r)
            index.apply(s, n, record, rev)
            if record is None:
                current.pop((s, n), None)
            else:
                current[(s, n)] = record

    def expected() -> tuple[int, int | None, list[tuple[str, str]]]:
        selected = [r for k, r in current.items() if fnmatch.fnmatchcase(k[0], subject)
                    and fnmatch.fnmatchcase(k[1], name) and (not role or r["tags"].get("role") == role)]
        picked = sorted((r["subject"], r["name"]) for r in selected if (r["state"] in wanted) == inside)
        return len(selected), max((r["since"] for r in selected), default=None), picked

    apply(before, 1)
    first = index.tally(flt, wanted, inside=inside)  # built by a scan
    assert (first.count, first.latest_since, sorted(keys(first.rows))) == expected()
    apply(after, len(before) + 1)
    kept = index.tally(flt, wanted, inside=inside)  # kept through the changes since
    assert (kept.count, kept.latest_since, sorted(keys(kept.rows))) == expected()
