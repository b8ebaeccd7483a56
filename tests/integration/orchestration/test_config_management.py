"""The ansible and salt action plugins against the real tools, through the executor: ansible-core
with a local connection (a playbook and a module), and a real salt-master + salt-minion + salt-api
started on loopback (a state, a function, a failing state, refused credentials, the outbound
allowlist)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.orchestration.salt_stack import SALT_BIN, SECRET, USER, SaltStack, salt_stack
from tests.unit.executor.conftest import ExecutorHarness, make_action

PYTHON = Path(__import__("sys").executable)


def _executor(plugin_settings: dict, outbound: dict | None = None) -> ExecutorHarness:
    from app.executor.agent import build_executor_agent
    from app.executor.config import ExecutorConfig
    from app.executor.plugin import default_plugins
    from app.executor.plugins import load_builtin_plugins

    load_builtin_plugins()
    config = ExecutorConfig.model_validate({
        "timeout": "120s", "retries": {"max_attempts": 1}, "plugin_settings": plugin_settings,
        "outbound": outbound or {"allow": [{"networks": ["127.0.0.1/32"], "schemes": ["http"], "ports": ["*"]}]}})
    return ExecutorHarness([build_executor_agent(config, plugins=default_plugins)], wall_clock_ms=5_000)


# -- ansible ----------------------------------------------------------------------------------------------
@pytest.fixture
def ansible_project(tmp_path: Path) -> Path:
    project = tmp_path / "ansible"
    project.mkdir()
    (project / "hosts").write_text(f"[web]\nlocalhost ansible_connection=local ansible_python_interpreter={PYTHON}\n")
    (project / "site.yml").write_text(textwrap.dedent(f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: ping
              ping:
            - name: write the version
              copy:
                content: "version={{{{ version }}}}\\n"
                dest: "{tmp_path}/deployed-{{{{ inventory_hostname }}}}"
        """))
    (project / "fail.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - fail: {msg: broken}\n")
    return project


def test_ansible__playbook_runs_and_counts_and_recap_land_in_the_result(ansible_project: Path,
                                                                        tmp_path: Path) -> None:
    h = _executor({"ansible": {"project_dir": str(ansible_project), "inventory": str(ansible_project / "hosts"),
                               "playbooks": ["site.yml", "fail.yml"]}})
    h.run(make_action("a1", type="ansible", target="localhost",
                      params={"playbook": "site.yml", "extra_vars": {"version": "42"}}))
    [result] = h.results()
    assert result.status == "SUCCEEDED", result.error
    first = result.output.splitlines()[0]
    assert first == "ansible site.yml: successful (rc 0): ok=2 changed=1 failed=0 unreachable=0 skipped=0"
    assert "PLAY RECAP" in result.output and "localhost" in result.output
    assert (tmp_path / "deployed-localhost").read_text() == "version=42\n"

    h.run(make_action("a2", type="ansible", target="localhost", params={"playbook": "site.yml",
                                                                          "extra_vars": {"version": "42"}}))
    assert h.results()[-1].output.splitlines()[0].endswith("ok=2 changed=0 failed=0 unreachable=0 skipped=0"), \
        "a second run changes nothing"


def test_ansible__failed_playbook_fails_with_counts(ansible_project: Path) -> None:
    h = _executor({"ansible": {"project_dir": str(ansible_project), "inventory": str(ansible_project / "hosts")}})
    h.run(make_action("f1", type="ansible", target="localhost", params={"playbook": "fail.yml"}))
    [result] = h.results()
    assert result.status == "FAILED" and "1 failed, 0 unreachable" in result.error
    assert "failed=1" in result.output.splitlines()[0] and "PLAY RECAP" in result.output


def test_ansible__module_and_what_params_may_not_do(ansible_project: Path) -> None:
    h = _executor({"ansible": {"project_dir": str(ansible_project), "inventory": str(ansible_project / "hosts"),
                               "playbooks": ["site.yml"]}})
    h.run(make_action("m1", type="ansible", target="localhost", params={"module": "ping"}),
          make_action("m2", type="ansible", target="localhost", params={"module": "shell", "args": "rm -rf /"}),
          make_action("m3", type="ansible", target="localhost", params={"playbook": "../../etc/passwd"}),
          make_action("m4", type="ansible", target="localhost", params={"playbook": "fail.yml"}))
    by_id = {r.action_id: r for r in h.results()}
    assert by_id["m1"].status == "SUCCEEDED" and '"ping": "pong"' in by_id["m1"].output
    assert by_id["m2"].status == "REJECTED" and "module 'shell' is not allowed" in by_id["m2"].error
    assert by_id["m3"].status == "REJECTED" and "is not a file of" in by_id["m3"].error
    assert by_id["m4"].status == "REJECTED" and "is not allowed (playbooks: site.yml)" in by_id["m4"].error


# -- salt ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def salt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaltStack]:
    if not (SALT_BIN / "salt-api").exists():
        pytest.skip("salt is not installed: `make salt` installs salt-master/minion/api into .vigil/salt-venv")
    with salt_stack(tmp_path_factory.mktemp("salt")) as stack:
        yield stack


def _salt_settings(stack: SaltStack, **extra: object) -> dict:
    return {"salt": {"url": stack.url, "username": USER, "password": "${env:IT_SALT_PASSWORD}",
                     "eauth": "sharedsecret", **extra}}


def test_salt__state_and_function_per_minion(salt: SaltStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_SALT_PASSWORD", SECRET)
    h = _executor(_salt_settings(salt))
    h.run(make_action("s1", type="salt", target=salt.minion_id, params={"fun": "state.apply", "arg": ["hello"]}),
          make_action("s2", type="salt", target="*", params={"fun": "test.ping"}),
          make_action("s3", type="salt", target=salt.minion_id, params={"fun": "state.apply", "arg": ["broken"]}),
          make_action("s4", type="salt", target=salt.minion_id, params={"fun": "cmd.run", "arg": ["id"]}),
          make_action("s5", type="salt", target="nobody-*", params={"fun": "test.ping"}))
    by_id = {r.action_id: r for r in h.results()}
    assert by_id["s1"].status == "SUCCEEDED", by_id["s1"].error
    assert by_id["s1"].output.splitlines()[:2] == [f"salt state.apply on {salt.minion_id}: 1 minion(s), 0 failed",
                                                   f"{salt.minion_id}: ok: 1 ok, 1 changed, 0 failed"]
    assert (salt.root / "hello.txt").read_text().strip() == "hello from salt"
    assert by_id["s2"].status == "SUCCEEDED" and f"{salt.minion_id}: ok: true" in by_id["s2"].output
    assert by_id["s3"].status == "FAILED" and f"failed on {salt.minion_id}" in by_id["s3"].error
    assert "0 ok, 0 changed, 1 failed" in by_id["s3"].output
    assert by_id["s4"].status == "REJECTED" and "'cmd.run' is not allowed" in by_id["s4"].error
    assert by_id["s5"].status == "FAILED" and "no minion answered" in by_id["s5"].error


def test_salt__refused_credentials_and_the_outbound_allowlist(salt: SaltStack,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_SALT_PASSWORD", "not-the-secret")
    h = _executor(_salt_settings(salt))
    h.run(make_action("c1", type="salt", target=salt.minion_id, params={"fun": "test.ping"}))
    [refused] = h.results()
    assert refused.status == "FAILED" and "refused the credentials (HTTP 401)" in refused.error

    monkeypatch.setenv("IT_SALT_PASSWORD", SECRET)
    h = _executor(_salt_settings(salt), outbound={"allow": [{"networks": ["0.0.0.0/0"], "schemes": ["https"]}]})
    h.run(make_action("c2", type="salt", target=salt.minion_id, params={"fun": "test.ping"}))
    [blocked] = h.results()
    assert blocked.status == "REJECTED" and "127.0.0.1" in blocked.error
