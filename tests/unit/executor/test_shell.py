"""The shell plugin: allowlist by name, declared slots only, literal argv (real child processes)."""

from __future__ import annotations

import sys

import pytest

from app.executor.argv import ArgvError, parse_argv_template
from tests.unit.executor.conftest import make_action

COMMANDS = {
    "echo-arg": ["printf", "%s", "{arg}"],
    "greet": {"argv": ["printf", "%s|%s", "hello {who}", "{{literal}}"]},
    "fail": [sys.executable, "-c", "import sys; print('about to fail'); sys.exit(3)"],
    "chatty": [sys.executable, "-c", "import sys; sys.stdout.write('x' * 100000)"],
    "slow": {"argv": ["sh", "-c", "echo begun; exec sleep 30"], "timeout": "1s"},
    "show-env": [sys.executable, "-c", "import os; print(sorted(os.environ))"],
    "dash-ok": {"argv": ["printf", "%s", "{arg}"], "allow_option_values": True},
    "missing": ["/nonexistent/program-xyz"],
}


def shell(action_id: str, command: str, **args: object) -> dict:
    return make_action(action_id, type="shell", params={"command": command, "args": args})


@pytest.fixture
def h(executor):
    return executor(commands=COMMANDS, max_output_bytes=1000, retries={"max_attempts": 2, "backoff": "1ms"})


@pytest.mark.parametrize("value", ["; rm -rf /", "$(touch /tmp/pwned) `id` && echo hi | cat > x", "a\nb'\"*"])
def test_shell_metacharacters__passed_literally_as_one_argument(h, value) -> None:
    h.run(shell("s1", "echo-arg", arg=value))
    [result] = h.results()
    assert result.status == "SUCCEEDED"
    assert result.output == value


def test_slots__fill_inside_an_argument_and_braces_stay_literal(h) -> None:
    h.run(shell("s1", "greet", who="world; ls"))
    assert h.results()[0].output == "hello world; ls|{literal}"


@pytest.mark.parametrize(("params", "error"), [
    ({"command": "rm", "args": {}}, "command 'rm' is not in this executor's allowlist"),
    ({"command": "echo-arg", "args": {"arg": "x", "extra": "y"}}, "argument(s) extra not declared"),
    ({"command": "echo-arg", "args": {}}, "missing argument(s) arg"),
    ({"command": "echo-arg", "args": {"arg": 5}}, "argument arg must be a string, got int"),
    ({"command": "echo-arg", "args": {"arg": ["a", "b"]}}, "must be a string, got list"),
    ({"command": "echo-arg", "args": {"arg": "--version"}}, "starts with '-'"),
    ({"command": "echo-arg", "args": {"arg": "a\x00b"}}, "NUL"),
    ({"command": "echo-arg", "argv": ["sh", "-c", "id"]}, "unknown param(s) argv"),
    ({"args": {}}, "param command is required"),
])
def test_refused_params__rejected_before_anything_runs(h, params, error) -> None:
    h.run(make_action("s1", type="shell", params=params))
    [result] = h.results()
    assert result.status == "REJECTED" and error in result.error
    assert result.attempts == 1


def test_option_like_values__allowed_when_the_command_says_so(h) -> None:
    h.run(shell("s1", "dash-ok", arg="--version"))
    assert h.results()[0].output == "--version"


def test_nonzero_exit__failed_with_output_and_retried(h) -> None:
    h.run(shell("s1", "fail"))
    [result] = h.results()
    assert (result.status, result.attempts) == ("FAILED", 2)
    assert "exit status 3" in result.error and result.output.strip() == "about to fail"


def test_missing_program__failed_without_retry(h) -> None:
    h.run(shell("s1", "missing"))
    [result] = h.results()
    assert (result.status, result.attempts) == ("FAILED", 1) and "cannot start" in result.error


def test_output__truncated_to_the_limit(h) -> None:
    h.run(shell("s1", "chatty"))
    [result] = h.results()
    assert result.status == "SUCCEEDED"
    assert len(result.output.encode()) <= 1000 and "bytes truncated" in result.output


def test_timeout__killed_with_partial_output_and_not_retried(h) -> None:
    h.run(shell("s1", "slow"))
    [result] = h.results()
    assert (result.status, result.attempts) == ("TIMED_OUT", 1), "shell is not idempotent: no retry"
    assert "killed after 1s" in result.error and result.output.strip() == "begun"


def test_environment__minimal_no_executor_secrets(h, monkeypatch) -> None:
    monkeypatch.setenv("VIGIL_ACTION_SIGNING_KEY", "secret")
    monkeypatch.setenv("SMTP_PASSWORD", "secret")
    h.run(shell("s1", "show-env"))
    names = h.results()[0].output
    assert "VIGIL_ACTION_ID" in names and "PATH" in names
    assert "SIGNING_KEY" not in names and "SMTP_PASSWORD" not in names


@pytest.mark.parametrize(("argv", "error"), [
    ([], "the command is empty"),
    (["{prog}", "x"], "the program '{prog}' must be fixed"),
    (["ls", "{a b}"], "a lone '{'"),
    (["ls", "oops}"], "a lone '}'"),
])
def test_argv_template__invalid_templates_refused(argv, error) -> None:
    with pytest.raises(ArgvError, match=error.replace("(", r"\(").replace("{", r"\{")):
        parse_argv_template(argv)


def test_argv_template__slots_and_render() -> None:
    t = parse_argv_template(["systemctl", "{verb}", "{unit}.service"])
    assert t.slots == {"verb", "unit"}
    assert t.render({"verb": "restart", "unit": "nginx; reboot"}) == ["systemctl", "restart", "nginx; reboot.service"]
