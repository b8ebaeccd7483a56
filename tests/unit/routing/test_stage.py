"""The routes stage in the in-memory harness: copies keep key, value, headers and timestamp; hot
reload keeps the last good version of a broken file; missing destinations are counted, not fatal."""

from __future__ import annotations

import os
from pathlib import Path

from app.routing.catalog import FixedCatalog
from app.routing.loader import RouteSetLoader
from app.routing.stage import MISSING_TOPIC, RoutesConfig, RoutesStage
from app.runtime.engine import InRecord
from app.runtime.testing import AgentHarness

ROUTES = """\
routes:
  - name: prod
    match: {tags.env: production}
    to: prod-copy
  - name: critical
    match: {severity: critical}
    to: critical-copy
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a new mtime even within one tick


def event(subject: str, **fields: object) -> dict[str, object]:
    return {"id": f"id-{subject}", "subject": subject, "name": "load", "time": 5, "kind": "STATUS",
            "severity": 0, "tags": {}, "metrics": {}, **fields}


def stage_in(tmp_path: Path, catalog: FixedCatalog | None = None) -> tuple[RoutesStage, AgentHarness, Clock]:
    clock = Clock()
    stage = RoutesStage(RoutesConfig(tmp_path / "routes"), catalog=catalog or FixedCatalog(None), clock=clock)
    return stage, AgentHarness([stage.agent]), clock


def feed_raw(harness: AgentHarness, value: dict[str, object], *, key: bytes, raw: bytes,
             headers: list[tuple[str, bytes]] | None, timestamp_ms: int) -> None:
    """One consumed record as the worker hands it over (raw bytes beside the decoded value)."""
    harness.engine.process("events", 0, [InRecord(key.decode(), value, 0, timestamp_ms, "vigil.Event", raw, key,
                                                  headers)])
    harness._drain()


def test_a_copy_keeps_key_value_headers_and_timestamp(tmp_path: Path) -> None:
    write(tmp_path / "routes" / "r.yaml", ROUTES)
    stage, harness, _ = stage_in(tmp_path)
    headers = [("traceparent", b"00-abc-01"), ("x", b"\x00\x01")]
    feed_raw(harness, event("web1", tags={"env": "production"}, severity=2), key=b"web1/load",
             raw=b"\x00\x00\x00\x00\x01avro-bytes", headers=headers, timestamp_ms=1234)
    out = harness.outputs()
    assert [o.topic for o in out] == ["prod-copy", "critical-copy"]
    for o in out:
        assert (o.key, o.value, o.headers, o.timestamp_ms) == (b"web1/load", b"\x00\x00\x00\x00\x01avro-bytes",
                                                               headers, 1234)
    assert stage.routed.labels("prod")._value.get() == 1
    assert stage.routed.labels("critical")._value.get() == 1


def test_events_no_route_matches_are_not_copied(tmp_path: Path) -> None:
    write(tmp_path / "routes" / "r.yaml", ROUTES)
    _, harness, _ = stage_in(tmp_path)
    harness.feed("events", event("db1"))
    assert harness.outputs() == []


def test_no_routes_folder_routes_nothing(tmp_path: Path) -> None:
    stage, harness, _ = stage_in(tmp_path)
    harness.feed("events", event("web1", tags={"env": "production"}))
    assert harness.outputs() == [] and stage.active._value.get() == 0


def test_hot_reload_picks_up_changes_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "routes" / "r.yaml"
    write(path, ROUTES)
    stage, harness, clock = stage_in(tmp_path)
    prod = event("web1", tags={"env": "production"})
    harness.feed("events", prod)
    assert [o.topic for o in harness.outputs()] == ["prod-copy"]
    write(path, ROUTES.replace("prod-copy", "prod-copy-2"))
    clock.now += 1.0  # within the reload interval: not read yet
    harness.clear_outputs()
    harness.feed("events", prod)
    assert [o.topic for o in harness.outputs()] == ["prod-copy"]
    clock.now += 2.0
    harness.clear_outputs()
    harness.feed("events", prod)
    assert [o.topic for o in harness.outputs()] == ["prod-copy-2"]
    write(path, ROUTES.replace("to: prod-copy", "to: events"))  # broken: a loop
    clock.now += 2.0
    harness.clear_outputs()
    harness.feed("events", prod)
    assert [o.topic for o in harness.outputs()] == ["prod-copy-2"]  # the last good version stays
    assert stage.file_errors._value.get() == 1
    assert [str(e) for e in stage.loader.current().errors] == [
        f"{path}:4: route prod: `to: events` is the topic routes read: its copies would be routed again (a loop); "
        "send them to another topic"]
    path.unlink()
    clock.now += 2.0
    harness.clear_outputs()
    harness.feed("events", prod)
    assert harness.outputs() == [] and stage.file_errors._value.get() == 0


def test_a_duplicate_name_across_files_is_an_error_and_the_first_wins(tmp_path: Path) -> None:
    write(tmp_path / "routes" / "a.yaml", ROUTES)
    write(tmp_path / "routes" / "b.yaml", "routes:\n  - name: prod\n    to: other\n")
    routes = RouteSetLoader(tmp_path / "routes").reload()
    assert [r.to for r in routes] == ["prod-copy", "critical-copy"]
    assert [str(e) for e in routes.errors] == [
        f"{tmp_path / 'routes' / 'b.yaml'}:2: duplicate route name `prod`: already defined at "
        f"{tmp_path / 'routes' / 'a.yaml'}:2"]


def test_a_missing_destination_is_counted_and_skipped(tmp_path: Path) -> None:
    write(tmp_path / "routes" / "r.yaml", ROUTES)
    catalog = FixedCatalog(frozenset({"critical-copy", "events"}))
    stage, harness, _ = stage_in(tmp_path, catalog)
    harness.feed_many("events", [event("web1", tags={"env": "production"}, severity=2)] * 3)
    assert [o.topic for o in harness.outputs()] == ["critical-copy"] * 3
    assert stage.errors.labels("prod", MISSING_TOPIC)._value.get() == 3
    catalog.names = frozenset({"critical-copy", "events", "prod-copy"})  # created meanwhile
    harness.clear_outputs()
    harness.feed("events", event("web1", tags={"env": "production"}))
    assert [o.topic for o in harness.outputs()] == ["prod-copy"]


def test_sampled_out_events_are_counted(tmp_path: Path) -> None:
    write(tmp_path / "routes" / "r.yaml", "routes:\n  - name: half\n    to: half\n    sample: {percent: 50}\n")
    stage, harness, _ = stage_in(tmp_path)
    harness.feed_many("events", [event(f"h{i}") for i in range(1000)])
    copied = len(harness.outputs())
    assert 400 < copied < 600
    assert stage.sampled_out.labels("half")._value.get() == 1000 - copied
    harness.clear_outputs()
    harness.feed_many("events", [event(f"h{i}") for i in range(1000)])
    assert len(harness.outputs()) == copied  # the same identities again


def test_the_worker_builds_the_routes_stage_from_the_settings(tmp_path: Path) -> None:
    from app.config import load_settings
    from app.stages import build_stages

    write(tmp_path / "routes" / "r.yaml", ROUTES)
    [stage] = build_stages(load_settings(rules_dir=tmp_path), ["routes"])
    assert stage.name == "routes" and [a.name for a in stage.agents] == ["routes"]
    assert stage.agents[0].topic == "events" and stage.agents[0].batch
    stage.close()


def test_the_routes_agent_is_eager_and_reads_kafka_time(tmp_path: Path) -> None:
    from app.runtime.agent import kafka_time

    routes = RoutesStage(RoutesConfig(tmp_path), catalog=FixedCatalog(None))
    # each slice of a turn as it is decoded; no event-time call per record (the routes read none)
    assert routes.agent.eager and routes.agent.batch and routes.agent.timestamp is kafka_time
