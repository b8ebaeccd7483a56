"""The built-in rules stage as `vigil worker` builds it from the settings (app.stages): its agents,
its GET /rules route and its signing key come from the environment, and building it registers
nothing process-wide."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import load_settings
from app.rules.signing_key import SigningKeyError
from app.runtime.agent import default_registry
from app.stages import build_stages


def test_builtin_stage__configured_from_env__serves_rules_route(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ok.yaml").write_text("rules: [{name: r1, match: {name: x}, actions: [{print: {}}]}]\n")
    (tmp_path / "broken.yaml").write_text("rules: [{name: r2, match: {nme: x}, actions: [{print: {}}]}]\n")
    monkeypatch.setenv("VIGIL_RULES_DIR", str(tmp_path))
    monkeypatch.setenv("VIGIL_ACTION_SIGNING_KEY", "k" * 32)
    [stage] = build_stages(load_settings(), ["rules"])
    try:
        status, body = stage.routes["/rules"]({})
        assert sorted(a.name for a in stage.agents) == ["rules_evaluate", "rules_route_alerts", "rules_route_events"]
        assert (status, body["signed"], [r["name"] for r in body["rules"]], body["rules_dir"]) == (
            200, True, ["r1"], str(tmp_path))
        assert len(body["errors"]) == 1 and body["errors"][0].startswith(f"{tmp_path / 'broken.yaml'}:1:")
        assert default_registry.agents() == [] and default_registry.routes == {}
    finally:
        stage.close()


def test_builtin_stages__two_in_one_process_are_independent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RULES_DIR", str(tmp_path))
    a, b = build_stages(load_settings(), ["pipeline"]), build_stages(load_settings(), ["pipeline"])
    assert a[0].agents[0] is not b[0].agents[0]
    assert a[0].agents[0].tables[0] is not b[0].agents[0].tables[0]


def test_builtin_stage__unusable_signing_key_stops_the_worker_with_the_reason(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RULES_DIR", str(tmp_path))
    monkeypatch.setenv("VIGIL_ACTION_SIGNING_KEY_FILE", str(tmp_path / "nope"))
    with pytest.raises(SigningKeyError, match="VIGIL_ACTION_SIGNING_KEY_FILE.*cannot read|cannot read.*"):
        build_stages(load_settings(), ["rules"])
