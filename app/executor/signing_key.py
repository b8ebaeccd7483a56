"""The shared action-signing key (HMAC-SHA256), from the environment or a mounted file.

    VIGIL_ACTION_SIGNING_KEY        the key itself, or
    VIGIL_ACTION_SIGNING_KEY_FILE   a file holding it (e.g. a Kubernetes secret); trailing
                                    whitespace/newlines are ignored

The rules stage signs with it and executors verify with it (app.model.signing). Placeholder
until the rules stage ships `app/rules/signing_key.py` with the same function; then one goes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from app.config import ConfigError

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "load_signing_key"]

KEY_ENV = "VIGIL_ACTION_SIGNING_KEY"
KEY_FILE_ENV = "VIGIL_ACTION_SIGNING_KEY_FILE"


def load_signing_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key as bytes, or None when neither variable is set. ConfigError when both are set,
    the file cannot be read, or the key is empty."""
    env = os.environ if env is None else env
    value, path = env.get(KEY_ENV), env.get(KEY_FILE_ENV)
    if value is not None and path is not None:
        raise ConfigError(f"set {KEY_ENV} or {KEY_FILE_ENV}, not both")
    if path is not None:
        try:
            key = Path(path).read_bytes().rstrip()
        except OSError as exc:
            raise ConfigError(f"{KEY_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        where = f"{KEY_FILE_ENV} ({path})"
    elif value is not None:
        key, where = value.encode().rstrip(), KEY_ENV
    else:
        return None
    if not key:
        raise ConfigError(f"{where}: the action signing key is empty")
    return key
