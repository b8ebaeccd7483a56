"""match/when predicates: every operator, type mismatches, missing fields, combinators, never raising."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.fields import MISSING, group_key, metric_getter, parse_field
from app.rules.match import compile_match, compile_value_test, literal_names
from app.rules.source import ErrorSink

from .conftest import event


def value_test(spec: Any, key: str | None = None) -> Any:
    sink = ErrorSink("t.yaml")
    test = compile_value_test(spec, sink, 1, key=key)
    assert not sink.errors, sink.errors
    return test


# (condition, field value, expected)
OPERATOR_CASES = [
    # glob strings and plain values
    ("web*", "web1", True), ("web*", "db1", False), ("web?", "web12", False), ("db[12]", "db2", True),
    ("web1", "web1", True), ("web1", "WEB1", False), ("2", 2, True), ("2", 2.0, True), ("true", True, True),
    (2, 2, True), (2, 2.0, True), (2, "2", True), (2, 3, False), (True, True, True), (True, 1, False),
    (None, None, True), (None, "", False),
    # eq / ne
    ({"eq": "a"}, "a", True), ({"eq": "a*"}, "abc", False), ({"eq": 1.5}, "1.5", True),
    ({"eq": "1.5"}, 1.5, True), ({"eq": "x"}, 1, False), ({"eq": 1}, "one", False),
    ({"ne": "a"}, "b", True), ({"ne": "a"}, "a", False), ({"ne": 1}, "one", True), ({"ne": "a"}, MISSING, False),
    # ordering: numbers, numeric strings (tags), strings, mismatches
    ({"gt": 20}, 21, True), ({"gt": 20}, 20, False), ({"ge": 20}, 20, True), ({"lt": 20}, 19.9, True),
    ({"le": 20}, 20.0, True), ({"le": 20}, 20.1, False), ({"gt": 8}, "16", True), ({"gt": 8}, "lots", False),
    ({"gt": "b"}, "c", True), ({"lt": "b"}, "a", True), ({"gt": "10"}, 11, True), ({"gt": 1}, True, False),
    ({"gt": 1}, None, False), ({"gt": 1}, [2], False), ({"gt": 1}, {"a": 2}, False), ({"ge": 0}, float("nan"), False),
    ({"gt": 0, "lt": 10}, 5, True), ({"gt": 0, "lt": 10}, 10, False),
    # in / not_in
    ({"in": ["a", "b"]}, "b", True), ({"in": ["a", "b"]}, "c", False), ({"in": [1, 2]}, "2", True),
    ({"not_in": ["a"]}, "b", True), ({"not_in": ["a"]}, "a", False), ({"not_in": ["a"]}, MISSING, False),
    # regex (search), on text and numbers
    ({"regex": "^web[0-9]+$"}, "web12", True), ({"regex": "eb"}, "web12", True), ({"regex": "^eb"}, "web", False),
    ({"regex": "^4\\d\\d$"}, 404, True), ({"regex": "x"}, ["x"], False), ({"regex": "x"}, None, False),
    # contains / startswith / endswith
    ({"contains": "disk"}, "root disk full", True), ({"contains": "b"}, ["a", "b"], True),
    ({"contains": 2}, [1, 2], True), ({"contains": "k"}, {"k": 1}, True), ({"contains": "z"}, "abc", False),
    ({"contains": "a"}, 5, False), ({"startswith": "web"}, "web1", True), ({"startswith": "web"}, "aweb", False),
    ({"endswith": ".com"}, "a.com", True), ({"endswith": "1"}, 11, True), ({"startswith": "a"}, None, False),
    # exists: present and not null
    ({"exists": True}, "x", True), ({"exists": True}, "", True), ({"exists": True}, MISSING, False),
    ({"exists": True}, None, False), ({"exists": False}, MISSING, True), ({"exists": False}, 0, False),
    # missing fields satisfy nothing but exists: false (and `not`)
    ("*", MISSING, False), ({"eq": None}, MISSING, False), ({"lt": 5}, MISSING, False),
    ({"in": [None]}, MISSING, False), ({"regex": ".*"}, MISSING, False), ({"contains": "a"}, MISSING, False),
    # combinators inside a field condition
    ({"any": [{"eq": 1}, {"ge": 3}]}, 3, True), ({"any": [{"eq": 1}, {"ge": 3}]}, 2, False),
    ({"all": [{"ge": 1}, {"le": 3}]}, 2, True), ({"all": [{"ge": 1}, {"le": 3}]}, 4, False),
    ({"not": {"eq": 1}}, 2, True), ({"not": {"eq": 1}}, 1, False), ({"not": {"eq": 1}}, MISSING, True),
    ({"not": "web*"}, "db1", True),
]


@pytest.mark.parametrize(("spec", "value", "expected"), OPERATOR_CASES)
def test_operator__table(spec: Any, value: Any, expected: bool) -> None:
    assert value_test(spec)(value) is expected


@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("critical", 2, True), ({"ge": "warning"}, 1, True), ({"ge": "warning"}, 0, False),
    ({"in": ["ok", "unknown"]}, 3, True), ("Critical", 1, False),
])
def test_severity__accepts_state_names(spec: Any, value: int, expected: bool) -> None:
    assert value_test(spec, key="severity")(value) is expected


@pytest.mark.parametrize(("spec", "value", "expected"), [("metric", "METRIC", True), ("arch*", "ARCHIVE", True),
                                                         ({"in": ["status"]}, "STATUS", True)])
def test_kind__is_case_insensitive(spec: Any, value: str, expected: bool) -> None:
    assert value_test(spec, key="kind")(value) is expected


@pytest.mark.parametrize(("spec", "message"), [
    ({"gtt": 1}, "unknown operator `gtt` (did you mean `gt`?)"),
    ({"regex": "(unclosed"}, "bad regex"),
    ({"in": "a"}, "`in` needs a list"),
    ({"gt": [1]}, "`gt` needs a number or a string"),
    ({"gt": True}, "`gt` needs a number or a string"),
    ({"exists": "yes"}, "`exists` needs true or false"),
    ({"eq": {"a": 1}}, "`eq` needs a single value"),
    ({"eq": float("nan")}, "`eq` needs a single value"),
    ({"any": []}, "`any` needs a non-empty list"),
    ({}, "empty operator mapping"),
    (["a", "b"], "use {in: [...]}"),
])
def test_operator__bad_specs_are_reported(spec: Any, message: str) -> None:
    sink = ErrorSink("t.yaml")
    test = compile_value_test(spec, sink, 7, key="subject")
    assert any(message in e.message and e.line == 7 for e in sink.errors), sink.errors
    assert test("anything") is False


# --- field access ---------------------------------------------------------------------------------

EXTENDED = json.dumps({"deploy": {"version": "1.2", "hosts": ["a", "b"]}, "n": 3})


@pytest.mark.parametrize(("key", "record", "event_type", "expected"), [
    ("subject", event(), "vigil.Event", "web1"),
    ("type", event(), "acme.Deploy", "acme.Deploy"),
    ("tags.class", event(tags={"class": "client"}), "vigil.Event", "client"),
    ("tags.k8s.io/app", event(tags={"k8s.io/app": "api"}), "vigil.Event", "api"),
    ("tags.nope", event(), "vigil.Event", MISSING),
    ("metrics.load1", event(metrics={"load1": 1.5}), "vigil.Event", 1.5),
    ("data.deploy.version", event(extended=EXTENDED), "vigil.Event", "1.2"),
    ("data.deploy.hosts.1", event(extended=EXTENDED), "vigil.Event", "b"),
    ("data.deploy.hosts.9", event(extended=EXTENDED), "vigil.Event", MISSING),
    ("data.n.x", event(extended=EXTENDED), "vigil.Event", MISSING),
    ("data.n", event(extended="{not json"), "vigil.Event", MISSING),
    ("data.n", event(extended=None), "vigil.Event", MISSING),
    ("data.version", {"subject": "s", "name": "deploy", "time": 1, "version": "2.0"}, "acme.Deploy", "2.0"),
    ("data.build.id", {"subject": "s", "name": "d", "time": 1, "build": {"id": 7}}, "acme.Deploy", 7),
    ("tags.x", {"subject": "s", "name": "d", "time": 1, "tags": "not-a-map"}, "acme.Deploy", MISSING),
])
def test_field_access__by_key(key: str, record: dict[str, Any], event_type: str, expected: Any) -> None:
    ref = parse_field(key)
    assert not isinstance(ref, str), ref
    assert ref.get(record, event_type) == expected


@pytest.mark.parametrize(("key", "message"), [
    ("subjet", "did you mean `subject`"), ("tags.", "needs a name after `tags.`"),
    ("data.a..b", "needs a name after `data.`"), ("foo.bar", "unknown field"), (3, "must be a string"),
])
def test_field_access__bad_keys(key: Any, message: str) -> None:
    result = parse_field(key)
    assert isinstance(result, str) and message in result


@pytest.mark.parametrize(("metric", "record", "event_type", "expected"), [
    ("load1", event(metrics={"load1": 2.5}), "vigil.Event", 2.5),
    ("load1", event(), "vigil.Event", None),
    ("load1", event(load1=3), "vigil.Event", None),  # top-level fields are metrics only for custom types
    ("duration_ms", {"subject": "s", "name": "d", "time": 1, "duration_ms": 120}, "acme.Build", 120.0),
    ("status", {"subject": "s", "name": "d", "time": 1, "status": "ok"}, "acme.Build", None),
    ("data.cpu.user", event(extended='{"cpu": {"user": 0.5}}'), "vigil.Event", 0.5),
    ("tags.cores", event(tags={"cores": "8"}), "vigil.Event", 8.0),
    ("load1", event(metrics={"load1": float("inf")}), "vigil.Event", None),
])
def test_metric_getter__sources(metric: str, record: dict[str, Any], event_type: str, expected: Any) -> None:
    assert metric_getter(metric)(record, event_type) == expected


def test_group_key__escapes_separator_so_groups_stay_apart() -> None:
    assert group_key(["web1", "load"]) == "web1/load"
    assert group_key(["a/b", "c"]) != group_key(["a", "b/c"])
    assert group_key([]) == ""


# --- match mappings -------------------------------------------------------------------------------

MATCH_CASES = [
    ({"name": "load", "tags.class": "client"}, event(tags={"class": "client"}), True),
    ({"name": "load", "tags.class": "client"}, event(tags={"class": "server"}), False),
    ({"name": "load", "tags.class": "client"}, event(), False),
    ({"subject": "web*", "severity": 2}, event(severity=2), True),
    ({"type": "vigil.*"}, event(), True),
    ({"any": [{"subject": "db*"}, {"severity": {"ge": 2}}]}, event(severity=3), True),
    ({"any": [{"subject": "db*"}, {"severity": {"ge": 2}}]}, event(severity=1), False),
    ({"all": [{"subject": "web*"}, {"name": "load"}]}, event(), True),
    ({"not": {"subject": "web*"}}, event(), False),
    ({"not": {"tags.env": "prod"}}, event(), True),
    ({"name": "load", "not": {"any": [{"tags.role": "db"}, {"origin": "test*"}]}}, event(origin="test-rig"), False),
    ({"metrics.load1": {"gt": 20}}, event(metrics={"load1": 20.5}), True),
    ({"data.deploy.version": {"startswith": "1."}}, event(extended=EXTENDED), True),
    ({"text": {"regex": "(?i)timeout"}}, event(text="Read TIMEOUT"), True),
    ({}, event(), True),
]


@pytest.mark.parametrize(("spec", "record", "expected"), MATCH_CASES)
def test_match__table(spec: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    sink = ErrorSink("t.yaml")
    predicate = compile_match(spec, sink, 1)
    assert not sink.errors
    assert predicate(record, "vigil.Event") is expected


@pytest.mark.parametrize(("spec", "expected"), [
    ({"name": "load"}, frozenset({"load"})), ({"name": {"in": ["a", "b"]}}, frozenset({"a", "b"})),
    ({"name": {"eq": "x"}}, frozenset({"x"})), ({"name": "lo*"}, None), ({"subject": "x"}, None),
    ({"name": {"ne": "x"}}, None), (None, None),
])
def test_literal_names__only_for_exact_names(spec: Any, expected: frozenset[str] | None) -> None:
    assert literal_names(spec) == expected


# --- robustness -------------------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=8)
FIELD_NAMES = st.sampled_from(["subject", "name", "kind", "severity", "text", "tags", "metrics", "extended",
                               "origin", "time", "x"])
ARBITRARY_EVENTS = st.dictionaries(FIELD_NAMES, st.one_of(VALUES, st.text().map(json.dumps)), max_size=8)

ALL_MATCHERS = [spec for spec, _, _ in MATCH_CASES] + [
    {key: spec} for key in ("subject", "severity", "tags.a", "metrics.m", "data.a.0.b")
    for spec, _, _ in OPERATOR_CASES if not (isinstance(spec, float) or spec is MISSING)
]


@settings(max_examples=200, deadline=None)
@given(record=ARBITRARY_EVENTS, event_type=st.sampled_from(["vigil.Event", "acme.X"]))
def test_match__never_raises_on_arbitrary_events(record: dict[str, Any], event_type: str) -> None:
    for spec in ALL_MATCHERS:
        sink = ErrorSink("t.yaml")
        result = compile_match(spec, sink, 1)(record, event_type)
        assert isinstance(result, bool)
