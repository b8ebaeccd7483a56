"""Route files: parsing, validation with file:line, and `vigil rules check` over a rules directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.routing.loader import check_routes, load_routes
from app.routing.sampling import HASH_SPACE
from app.routing.spec import compile_routes_text
from app.rules.cli import rules_group
from app.rules.match import compile_match, match_fields
from app.rules.source import ErrorSink

GOOD = """\
routes:
  - name: prod-to-dev
    description: a tenth of production, by identity
    match: {tags.env: production}
    to: dev-events
    sample: {percent: 10}
  - name: critical-db
    match: {subject: "db*", severity: {ge: 2}}
    to: db-critical
    sample: {percent: 50, by: event_id}
  - name: paused
    enabled: false
    to: elsewhere
"""


def errors_of(text: str) -> list[str]:
    return [str(e) for e in compile_routes_text(text, "r.yaml")[1]]


def test_a_valid_file_compiles_every_route() -> None:
    routes, errors = compile_routes_text(GOOD, "r.yaml")
    assert errors == []
    assert [r.name for r in routes] == ["prod-to-dev", "critical-db", "paused"]
    first, second, third = routes
    assert (first.to, first.sample_percent, first.sample_by, first.line) == ("dev-events", 10.0, "identity", 2)
    assert first.sample_below == round(HASH_SPACE * 0.1)
    assert [f.key for f in first.fields] == ["tags.env"]
    assert [f.key for f in second.fields] == ["severity", "subject"]
    assert (second.sample_by, second.sample_percent) == ("event_id", 50.0)
    assert third.enabled is False and third.sample_percent is None
    assert third.match({"name": "anything"}, "vigil.Event")  # no match: every event
    assert first.match({"tags": {"env": "production"}}, "vigil.Event")
    assert not first.match({"tags": {"env": "staging"}}, "vigil.Event")


@pytest.mark.parametrize(("text", "expected"), [
    ("routes:\n  - name: a\n    to: x\n    tagz: 1\n", "r.yaml:4: route a: unknown key `tagz`"),
    ("routes:\n  - name: a\n    match: {subject: \"[web\"}\n", "r.yaml:2: route a: missing `to`"),
    ("routes:\n  - name: a\n    to: x\n    match: {severity: {gtt: 1}}\n",
     "r.yaml:4: severity: unknown operator `gtt`"),
    ("routes:\n  - name: a\n    to: x\n    match: {subjekt: web1}\n", "r.yaml:4: match: unknown field `subjekt`"),
    ("routes:\n  - name: a\n    to: events\n", "r.yaml:3: route a: `to: events` is the topic routes read"),
    ("routes:\n  - name: a\n    to: 'bad topic'\n", "r.yaml:3: route a: `to` must be a topic name"),
    ("routes:\n  - name: a\n    to: x\n    sample: {percent: 0}\n", "r.yaml:4: route a: sample percent must be"),
    ("routes:\n  - name: a\n    to: x\n    sample: {percent: 101}\n", "r.yaml:4: route a: sample percent must be"),
    ("routes:\n  - name: a\n    to: x\n    sample:\n      percent: 5\n      by: host\n",
     "r.yaml:6: route a: sample by must be one of identity, event_id"),
    ("routes:\n  - name: a\n    to: x\n    sample: {by: identity}\n", "r.yaml:4: route a: sample needs `percent`"),
    ("routes:\n  - name: a\n    to: x\n  - name: a\n    to: y\n", "r.yaml:4: duplicate route name `a`"),
    ("routes:\n  - name: a\n    to: x\n    enabled: maybe\n", "r.yaml:4: route a: `enabled` must be true or false"),
    ("rules: []\n", "r.yaml:1: expected a top-level mapping with a `routes:` list"),
    ("routes:\n  - name: a\n    to: x\nextra: 1\n", "r.yaml:4: file: unknown key `extra`"),
    ("routes: [\n", "r.yaml:2: not valid YAML"),
])
def test_invalid_routes_are_reported_with_file_and_line(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_rules_check_fails_on_an_invalid_route_file(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "copy.yaml").write_text("routes:\n  - name: loop\n    to: events\n")
    result = CliRunner().invoke(rules_group, ["check", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{tmp_path / 'routes' / 'copy.yaml'}:3: route loop: `to: events`" in result.output


def test_rules_check_passes_with_valid_routes_and_does_not_read_them_as_rules(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "copy.yaml").write_text(GOOD)
    (tmp_path / "load.yaml").write_text("rules:\n  - name: r\n    match: {name: load}\n    actions: [{print: {}}]\n")
    result = CliRunner().invoke(rules_group, ["check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 rule(s) in 1 file(s)" in result.output
    assert check_routes(tmp_path) == []
    assert [r.name for r in load_routes(tmp_path)] == ["prod-to-dev", "critical-db", "paused"]


def test_no_routes_folder_is_no_error(tmp_path: Path) -> None:
    assert check_routes(tmp_path) == [] and len(load_routes(tmp_path)) == 0


def test_a_route_matches_exactly_as_a_rule_with_the_same_match() -> None:
    spec = {"subject": "web*", "severity": {"any": [{"eq": 1}, {"ge": 3}]}, "not": {"tags.env": "dev"},
            "any": [{"kind": "metric"}, {"metrics.load1": {"gt": 10}}]}
    assert match_fields(spec) == {"subject", "severity", "tags.env", "kind", "metrics.load1"}
    [route], errors = compile_routes_text(yaml.safe_dump({"routes": [{"name": "r", "to": "x", "match": spec}]}), "r")
    assert errors == []
    rule_match = compile_match(spec, ErrorSink("rule"), 1)
    events = [{"subject": s, "severity": sev, "tags": tags, "kind": kind, "metrics": metrics}
              for s in ("web1", "db1") for sev in (0, 1, 3) for tags in ({}, {"env": "dev"})
              for kind in ("METRIC", "STATUS") for metrics in ({}, {"load1": 11.0})]
    assert [route.match(e, "vigil.Event") for e in events] == [rule_match(e, "vigil.Event") for e in events]
    assert any(route.match(e, "vigil.Event") for e in events) and not all(route.match(e, "vigil.Event") for e in events)
