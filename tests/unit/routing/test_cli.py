"""`vigil routes list` and `vigil routes test` over a rules directory."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.routing.cli import routes_group

ROUTES = """\
routes:
  - name: prod-to-dev
    match: {tags.env: production}
    to: dev-events
    sample: {percent: 10}
  - name: critical-db
    match: {subject: "db*", severity: {ge: critical}}
    to: db-critical
"""


def rules_dir(tmp_path: Path, text: str = ROUTES) -> Path:
    (tmp_path / "rules" / "routes").mkdir(parents=True)
    (tmp_path / "rules" / "routes" / "r.yaml").write_text(text)
    return tmp_path / "rules"


def test_list_shows_each_route_with_its_location(tmp_path: Path) -> None:
    result = CliRunner().invoke(routes_group, ["list", str(rules_dir(tmp_path))])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("prod-to-dev -> dev-events (10% by identity)") and lines[0].endswith("r.yaml:2")
    assert lines[1].startswith("critical-db -> db-critical")


def test_test_shows_the_routes_each_event_takes(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"subject": "db1", "name": "disk", "severity": 2, "tags": {"env": "staging"}},
        {"subject": "web1", "name": "load", "tags": {}},
    ]) + "\n")
    result = CliRunner().invoke(routes_group, ["test", str(events), "--rules", str(rules_dir(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"subject": "db1", "name": "disk", "routes": ["critical-db -> db-critical"], "sampled_out": []},
        {"subject": "web1", "name": "load", "routes": [], "sampled_out": []}]


def test_invalid_routes_fail_with_file_and_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(routes_group, ["list", str(rules_dir(tmp_path, "routes:\n  - name: a\n"))])
    assert result.exit_code != 0
    assert "r.yaml:2: route a: missing `to`" in result.output
