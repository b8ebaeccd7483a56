"""`vigil executor` options: --check summary, config and plugin errors, signature requirement."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import CliContext
from app.executor.cli import executor_command


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(executor_command, list(args), obj=CliContext(), env=env)


def test_check__summarises_plugins_commands_and_signing(tmp_path) -> None:
    config = tmp_path / "ex.yaml"
    config.write_text("commands:\n  restart: [systemctl, restart, '{unit}']\nconcurrency: 3\n")
    result = invoke("-c", str(config), "--plugins", "tests.unit.executor.sample_plugin", "--check",
                    env={"VIGIL_ACTION_SIGNING_KEY": "k" * 32})
    assert result.exit_code == 0, result.output
    assert "sample-ticket (idempotent)" in result.output and "http (idempotent)" in result.output
    assert "shell" in result.output and "commands: restart" in result.output
    assert "signatures: required (key loaded)" in result.output and "concurrency 3" in result.output
    assert "outbound: http/https to 0.0.0.0/0, ::/0 on standard ports" in result.output


@pytest.mark.parametrize("option", ["--config", "--executor-config", None])
def test_config__by_option_or_env_var(tmp_path, option) -> None:
    config = tmp_path / "ex.yaml"
    config.write_text("concurrency: 5\n")
    args = [option, str(config)] if option else []
    result = invoke(*args, "--check", env=None if option else {"VIGIL_EXECUTOR_CONFIG": str(config)})
    assert result.exit_code == 0 and "concurrency 5" in result.output


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--plugins", "no.such.module"], {}, "cannot import plugin module 'no.such.module'"),
    (["-c", "/nonexistent/ex.yaml"], {}, "cannot read executor config"),
    ([], {"VIGIL_ACTION_SIGNING_KEY": "a", "VIGIL_ACTION_SIGNING_KEY_FILE": "/x"}, "set only one of them"),
    ([], {"VIGIL_ACTION_SIGNING_KEY": "short"}, "use at least 16"),
])
def test_errors__one_clear_message(args, env, message) -> None:
    result = invoke(*args, "--check", env=env)
    assert result.exit_code == 1 and message in result.output


def test_require_signature__refuses_to_start_without_a_key(tmp_path) -> None:
    config = tmp_path / "ex.yaml"
    config.write_text("require_signature: true\n")
    result = invoke("-c", str(config), "--check")
    assert result.exit_code == 1 and "no signing key is configured" in result.output
