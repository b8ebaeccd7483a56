"""The built-in stage module `vigil worker` imports (in a subprocess: importing it registers agents
and the /rules route process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PROBE = """
import json
from app.runtime.agent import default_registry
from app.runtime.http import default_routes
import app.rules.agent as builtin
status, body = default_routes["/rules"]({})
print(json.dumps({"agents": sorted(a.name for a in default_registry.agents()), "status": status,
                  "signed": body["signed"], "rules": [r["name"] for r in body["rules"]], "errors": body["errors"],
                  "rules_dir": body["rules_dir"]}))
"""


def run_probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_builtin_stage__configured_from_env__serves_rules_route(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("rules: [{name: r1, match: {name: x}, actions: [{print: {}}]}]\n")
    (tmp_path / "broken.yaml").write_text("rules: [{name: r2, match: {nme: x}, actions: [{print: {}}]}]\n")
    done = run_probe({"VIGIL_RULES_DIR": str(tmp_path), "VIGIL_ACTION_SIGNING_KEY": "k" * 32,
                      "VIGIL_CONFIG": str(tmp_path / "none.yaml")})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["agents"] == ["rules_evaluate", "rules_route_alerts", "rules_route_events"]
    assert (out["status"], out["signed"], out["rules"], out["rules_dir"]) == (200, True, ["r1"], str(tmp_path))
    assert len(out["errors"]) == 1 and out["errors"][0].startswith(f"{tmp_path / 'broken.yaml'}:1:")


def test_builtin_stage__unusable_signing_key_stops_the_worker_with_the_reason(tmp_path: Path) -> None:
    done = run_probe({"VIGIL_RULES_DIR": str(tmp_path), "VIGIL_ACTION_SIGNING_KEY_FILE": str(tmp_path / "nope"),
                      "VIGIL_CONFIG": str(tmp_path / "none.yaml")})
    assert done.returncode != 0
    assert "VIGIL_ACTION_SIGNING_KEY_FILE" in done.stderr and "cannot read" in done.stderr
