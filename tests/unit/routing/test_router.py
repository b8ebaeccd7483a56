"""The router: which routes an event takes, its tables of field values, and deterministic sampling."""

from __future__ import annotations

import uuid

from app.routing.router import Router, route_batch, sampled_in
from app.routing.sampling import sample_point, sample_threshold
from app.routing.spec import Route, compile_routes_text
from app.runtime.engine import InRecord

ROUTES = """\
routes:
  - name: prod
    match: {tags.env: production}
    to: prod-copy
  - name: web-critical
    match: {subject: "web*", severity: {ge: 2}}
    to: web-critical
  - name: load-high
    match: {name: load, metrics.load1: {gt: 10}}
    to: load-high
  - name: tenth
    match: {tags.env: production}
    to: dev-events
    sample: {percent: 10}
  - name: tenth-by-id
    match: {kind: metric}
    to: dev-metrics
    sample: {percent: 10, by: event_id}
  - name: disabled
    enabled: false
    to: nowhere
"""


def routes(text: str = ROUTES) -> list[Route]:
    compiled, errors = compile_routes_text(text, "r.yaml")
    assert errors == []
    return compiled


def event(subject: str = "web1", name: str = "load", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": uuid.uuid4().hex, "subject": subject, "name": name, "kind": "METRIC",
                               "severity": 0, "tags": {}, "metrics": {}, "time": 1}
    base.update(fields)
    return base


def names(found: tuple[Route, ...]) -> list[str]:
    return [r.name for r in found]


def test_an_event_takes_every_matching_enabled_route_in_order() -> None:
    router = Router(routes())
    assert [r.name for r in router.routes] == ["prod", "web-critical", "load-high", "tenth", "tenth-by-id"]
    e = event(severity=2, tags={"env": "production"}, metrics={"load1": 12.0})
    assert names(router.matching(e, "vigil.Event")) == ["prod", "web-critical", "load-high", "tenth", "tenth-by-id"]
    assert names(router.matching(event("db1", kind="STATUS"), "vigil.Event")) == []


def direct(router: Router, e: dict[str, object], event_type: str = "vigil.Event") -> tuple[Route, ...]:
    """Every route's own compiled match, evaluated on the whole event."""
    return tuple(r for r in router.routes if r.match(e, event_type))


def test_decisions_on_field_values_equal_direct_evaluation() -> None:
    cached = Router(routes(ROUTES.split("  - name: load-high")[0]))  # prod, web-critical: identity/tag fields
    assert cached.caches and cached.fields == ("severity", "subject", "tags.env")
    samples = [event(f"{s}{i}", severity=sev, tags=tags) for s in ("web", "db") for i in range(5)
               for sev in (0, 2, 3) for tags in ({}, {"env": "production"}, {"env": "dev"})]
    for e in samples * 2:  # the second pass is answered from the tables
        assert cached.matching(e, "vigil.Event") == direct(cached, e)
    # each condition tested once per distinct value of its field (an absent tag is one value: MISSING)
    assert {f.key: len(f.bits) for f in cached._fields} == {"tags.env": 3, "subject": 10, "severity": 3}


ANY_ALL_NOT = """\
routes:
  - {name: a, match: {any: [{subject: "web*"}, {tags.rack: r1, not: {severity: {ge: 2}}}]}, to: a}
  - {name: b, match: {all: [{name: {in: [load, disk]}}, {not: {tags.env: dev}}], kind: {in: [metric, status]}}, to: b}
  - {name: c, match: {not: {any: [{tags.env: production}, {origin: {startswith: nagios}}]}}, to: c}
  - {name: d, match: {severity: critical, tags.team: {exists: true}}, to: d}
  - {name: e, match: {type: vigil.Event, subject: {regex: "^db[0-9]+$"}}, to: e}
  - {name: f, to: f}
  - {name: g, match: {subject: {not: {startswith: web}}, tags.rack: {any: [r1, r2]}}, to: g}
"""


def test_any_all_not_missing_tags_and_operators_decide_as_the_compiled_match() -> None:
    import itertools
    router = Router(routes(ANY_ALL_NOT))
    assert router.caches
    values = itertools.product(("web1", "db7", "dbx"), ("load", "cpu"), ("metric", "status", "log"),
                               (0, 2, 3), ({}, {"rack": "r1"}, {"env": "dev", "team": "x"}, {"env": "production"}),
                               ("nagios-bridge", "beacon"))
    for subject, name, kind, severity, tags, origin in values:
        e = event(subject, name, kind=kind, severity=severity, tags=tags, origin=origin)
        assert router.matching(e, "vigil.Event") == direct(router, e), e
    without_tags = event()
    del without_tags["tags"]
    assert router.matching(without_tags, "vigil.Event") == direct(router, without_tags)
    odd = event(tags=["not", "a", "map"])  # not decided on the tables: every route evaluated
    assert router.matching(odd, "vigil.Event") == direct(router, odd)


def test_routes_over_changing_fields_are_not_cached() -> None:
    router = Router(routes())
    assert not router.caches  # load-high reads metrics.load1
    assert names(router.matching(event(metrics={"load1": 11}, kind="STATUS"), "vigil.Event")) == ["load-high"]
    assert names(router.matching(event(metrics={"load1": 9}, kind="STATUS"), "vigil.Event")) == []
    assert router._plans == {} and router._fields == []


def test_custom_types_are_matched_without_the_tables() -> None:
    router = Router(routes(ROUTES.split("  - name: web-critical")[0]))
    assert router.caches
    assert names(router.matching({"subject": "x", "tags": {"env": "production"}}, "acme.Repair")) == ["prod"]
    assert router._plans == {} and all(not f.bits for f in router._fields)


def test_a_fields_table_starts_again_past_its_limit() -> None:
    router = Router(routes(ROUTES.split("  - name: web-critical")[0]), cache_limit=3)
    for i in range(10):
        router.matching(event(tags={"env": f"e{i}"}), "vigil.Event")
        assert all(len(f.bits) <= 3 for f in router._fields)
    assert names(router.matching(event(tags={"env": "production"}), "vigil.Event")) == ["prod"]


def test_sampling_is_deterministic_per_identity() -> None:
    route = Router(routes()).routes[3]  # tenth: 10% by identity
    keys = [f"host{i}/load".encode() for i in range(20_000)]
    first = [sampled_in(route, k, event(), None) for k in keys]
    again = [sampled_in(route, k, event(), None) for k in keys]  # other event ids, same identities
    assert first == again
    share = sum(first) / len(keys)
    assert 0.09 < share < 0.11, share


def test_sampling_by_event_id_is_deterministic_per_id() -> None:
    route = Router(routes()).routes[4]  # tenth-by-id
    events = [event() for _ in range(20_000)]
    decisions = [sampled_in(route, b"same/key", e, None) for e in events]
    assert decisions == [sampled_in(route, b"other/key", e, None) for e in events]
    assert 0.09 < sum(decisions) / len(events) < 0.11


def test_identity_without_a_key_is_subject_and_name() -> None:
    route = Router(routes()).routes[3]
    e = event("web7", "disk")
    assert sampled_in(route, None, e, None) == sampled_in(route, b"web7/disk", e, None)


def test_identity_points_are_remembered_per_key_within_the_limit_and_equal_the_hash() -> None:
    router = Router(routes(), cache_limit=4)
    keys = [f"host{i}/load".encode() for i in range(10)]
    for _ in range(2):  # the second pass reads what the first remembered (or computed again past the limit)
        assert [router.identity_point(k, event()) for k in keys] == [sample_point(k) for k in keys]
        assert len(router._identity_points) <= 4
    e = event("web7", "disk")
    assert router.identity_point(None, e) == sample_point(b"web7/disk")  # no key: not remembered


def test_sample_points_are_stable_and_samples_nest() -> None:
    # fixed values: the decision must never change between versions or processes
    assert sample_point(b"web1/load") == sample_point(b"web1/load")
    assert [sample_point(k) for k in (b"", b"a", b"web1/load")] == [0, 4200413011, 783624557]
    assert sample_threshold(100) == 2**32 and sample_threshold(0) == 0
    keys = [f"k{i}".encode() for i in range(5000)]
    ten = {k for k in keys if sample_point(k) < sample_threshold(10)}
    twenty = {k for k in keys if sample_point(k) < sample_threshold(20)}
    assert ten < twenty


def test_decide_splits_taken_and_sampled_out() -> None:
    router = Router(routes())
    inside = next(f"h{i}/load".encode() for i in range(1000) if sampled_in(router.routes[3], f"h{i}/load".encode(),
                                                                            event(), None))
    outside = next(f"h{i}/load".encode() for i in range(1000) if not sampled_in(
        router.routes[3], f"h{i}/load".encode(), event(), None))
    e = event(tags={"env": "production"}, kind="STATUS")
    assert names(router.decide(e, "vigil.Event", inside, b"").taken) == ["prod", "tenth"]
    decision = router.decide(e, "vigil.Event", outside, b"")
    assert (names(decision.taken), names(decision.sampled_out)) == (["prod"], ["tenth"])


def test_route_batch_forwards_once_per_route_in_batch_order_and_counts_the_rest() -> None:
    router = Router(routes())
    tenth = router.routes[3]
    keys = [f"h{i}/load".encode() for i in range(200)]
    inside = [k for k in keys if sampled_in(tenth, k, event(), None)][:2]
    outside = [k for k in keys if not sampled_in(tenth, k, event(), None)][:1]
    prod = event(tags={"env": "production"}, kind="STATUS")
    records = [InRecord(k.decode(), {**prod, "id": f"e{i}"}, i, 100 + i, "vigil.Event", b"raw%d" % i, k, None)
               for i, k in enumerate([inside[0], outside[0], inside[1]])]
    records.insert(1, InRecord("x", "not an event", 9, 0, None, b"x", b"x", None))  # skipped
    db1 = event("db1", severity=2, kind="STATUS")
    records.append(InRecord("db1/load", db1, 5, 105, "vigil.Event", b"raw5", b"db1/load", None))
    forwarded: list[tuple[str, list[int]]] = []
    counts = route_batch(router, records, frozenset({"dev-events"}),
                         lambda topic, copies: forwarded.append((topic, [r.offset for r in copies])))
    # every production record to prod-copy, in order, in one call; the sampled-in ones would go to
    # dev-events, which is missing: counted, not forwarded; db1 matches nothing
    assert forwarded == [("prod-copy", [0, 1, 2])]
    assert {r.name: n for r, n in counts.routed.items()} == {"prod": 3}
    assert {r.name: n for r, n in counts.sampled_out.items()} == {"tenth": 1}
    assert {r.name: n for r, n in counts.missing.items()} == {"tenth": 2}


def test_route_batch_takes_exactly_what_each_record_decided_alone_takes() -> None:
    # decided on tables of field values and sampled by key or event id; every record must still go
    # exactly where each route's own match and sample send it: keys present and missing, custom
    # types, records lacking fields
    text = ROUTES.split("  - name: load-high")[0] + ROUTES[ROUTES.index("  - name: tenth\n"):]
    router = Router(routes(text))
    assert router.caches
    records = []
    for i in range(600):
        e = event(f"{('web', 'db')[i % 2]}{i % 37}", severity=i % 4, kind=("METRIC", "STATUS")[i % 3 == 0],
                  tags=({}, {"env": "production"}, {"env": "dev"})[i % 3])
        if i % 50 == 7:
            del e["severity"]  # decided on its value MISSING
        key = None if i % 11 == 0 else f"{e['subject']}/load".encode()
        records.append(InRecord(None, e, i, i, "acme.Custom" if i % 13 == 0 else "vigil.Event", b"r%d" % i, key,
                                None))
    forwarded: dict[str, list[int]] = {}
    counts = route_batch(router, records * 2, frozenset(),
                         lambda topic, copies: forwarded.setdefault(topic, []).extend(r.offset for r in copies))
    expected: dict[str, list[int]] = {}
    out: dict[str, int] = {}
    for r in records * 2:  # uncached: every route's match, then its sample
        type_name = r.type_name
        assert type_name is not None
        for route in direct(router, r.value, type_name):
            if sampled_in(route, r.raw_key, r.value, r.raw_value):
                expected.setdefault(route.to, []).append(r.offset)
            else:
                out[route.name] = out.get(route.name, 0) + 1
        assert router.decide(r.value, type_name, r.raw_key, r.raw_value) == Router(router.routes).decide(
            r.value, type_name, r.raw_key, r.raw_value)
    assert forwarded == expected and set(expected) == {"prod-copy", "web-critical", "dev-events", "dev-metrics"}
    assert {r.name: n for r, n in counts.sampled_out.items()} == out
    assert {r.to: n for r, n in counts.routed.items()} == {topic: len(v) for topic, v in expected.items()}
