"""Where the action signing key comes from (shared by the rules stage and executors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.signing_key import KEY_ENV, KEY_FILE_ENV, SigningKeyError, load_signing_key

SECRET = "s3cret-0123456789abcdef"


def test_no_key_configured__none() -> None:
    assert load_signing_key({}) is None


def test_key_from_env_and_from_file__same_bytes(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")  # editors and `echo` add a newline: not part of the key
    assert load_signing_key({KEY_ENV: SECRET}) == SECRET.encode()
    assert load_signing_key({KEY_FILE_ENV: str(key_file)}) == SECRET.encode()


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    assert load_signing_key() == SECRET.encode()


@pytest.mark.parametrize(("env", "message"), [
    ({KEY_ENV: SECRET, KEY_FILE_ENV: "/x"}, "set only one"),
    ({KEY_FILE_ENV: "/nonexistent/key"}, "cannot read"),
    ({KEY_ENV: ""}, "is empty"),
    ({KEY_ENV: "short"}, "at least 16"),
])
def test_unusable_configuration__error_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SigningKeyError, match=message) as info:
        load_signing_key(env)
    assert "VIGIL_ACTION_SIGNING_KEY" in str(info.value)
