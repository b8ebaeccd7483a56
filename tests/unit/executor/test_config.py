"""executor.yaml loading (errors with file, line and field) and the pure policies."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.executor.config import ExecutorConfigError, RetryConfig, load_executor_config
from app.executor.ledger import Decision, decide, needs_durable_start
from app.executor.policy import backoff_s, should_retry, truncate
from app.model.events import ResultStatus
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "executor.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_example_file__loads() -> None:
    config = load_executor_config(REPO / "executor.yaml")
    assert config.commands["restart-service"].template.slots == {"service"}
    assert config.timeout_s("shell") == 120 and config.timeout_s("http") == 30


def test_defaults__without_a_file() -> None:
    config = load_executor_config(None)
    assert (config.concurrency, config.per_target_concurrency, config.splay_ms, config.commands) == (8, 1, 0, {})
    assert config.smtp is None


def test_smtp_password__resolved_from_env_or_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SMTP_PW", "s3cret")
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    path = write(tmp_path, """\
        smtp:
          username: vigil
          password: ${env:SMTP_PW}
        """)
    assert load_executor_config(path).smtp.password.get_secret_value() == "s3cret"
    path.write_text(f"smtp: {{username: vigil, password: '${{file:{secret}}}'}}\n")
    assert load_executor_config(path).smtp.password.get_secret_value() == "from-file"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("concurrency: 4\nsplay: soon\n", 2, "splay: 'soon' is not a duration"),
    ("retries:\n  max_attempts: 0\n", 2, "retries.max_attempts: Input should be greater than or equal to 1"),
    ("timeout: 10s\ncomands: {}\n", 2, "comands: unknown setting"),
    ("commands:\n  ok: [ls]\n  bad: ['{prog}', x]\n", 3, "commands.bad.argv: the program '{prog}' must be fixed"),
    ("commands:\n  'rm -rf': [rm]\n", 1, "command name 'rm -rf'"),
    ("smtp:\n  host: mail\n  password: hunter2\n", 3, "smtp.password: give the password as ${env:NAME}"),
    ("smtp:\n  password: ${env:NOT_SET_ANYWHERE_X}\n", 2, "environment variable NOT_SET_ANYWHERE_X is not set"),
    ("smtp:\n  username: vigil\n", 1, "username is set but password is not"),
    ("[1, 2]\n", 1, "top level must be a mapping"),
    ("concurrency: [\n", 2, "not valid YAML"),
])
def test_errors__name_file_line_and_field(tmp_path, text, line, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ExecutorConfigError) as info:
        load_executor_config(path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_backoff__exponential_and_capped() -> None:
    retry = RetryConfig(backoff="1s", max_backoff="5s", multiplier=2)
    assert [backoff_s(retry, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize(("status", "retryable", "idempotent", "attempt", "expected"), [
    (ResultStatus.FAILED, True, False, 1, True),
    (ResultStatus.FAILED, True, False, 3, False),  # max_attempts reached
    (ResultStatus.FAILED, False, True, 1, False),
    (ResultStatus.TIMED_OUT, True, False, 1, False),  # may have done its work: not again
    (ResultStatus.TIMED_OUT, True, True, 1, True),
    (ResultStatus.REJECTED, True, True, 1, False),
])
def test_should_retry(status, retryable, idempotent, attempt, expected) -> None:
    assert should_retry(status, retryable=retryable, idempotent=idempotent, attempt=attempt,
                        retry=RetryConfig(max_attempts=3)) is expected


@pytest.mark.parametrize(("entry", "idempotent", "running", "expected"), [
    (None, False, False, Decision.RUN),
    (None, False, True, Decision.DUPLICATE),
    ({"state": "finished"}, True, False, Decision.DUPLICATE),
    ({"state": "started"}, True, False, Decision.RESUME),
    ({"state": "started"}, False, False, Decision.INTERRUPTED),
])
def test_ledger_decide(entry, idempotent, running, expected) -> None:
    assert decide(entry, idempotent=idempotent, running_here=running) is expected


def test_truncate__utf8_safe_and_says_how_much() -> None:
    assert truncate("short", 100) == "short"
    cut = truncate("é" * 100, 64)
    assert len(cut.encode()) <= 64 and cut.startswith("é") and "bytes truncated" in cut
    cut.encode("utf-8")  # no half characters


def test_ledger__a_durable_start_is_needed_unless_the_plugin_is_idempotent_and_none_is_asked_for() -> None:
    assert needs_durable_start(idempotent=False, durable_idempotent=False)
    assert needs_durable_start(idempotent=False, durable_idempotent=True)
    assert needs_durable_start(idempotent=True, durable_idempotent=True)
    assert not needs_durable_start(idempotent=True, durable_idempotent=False)
