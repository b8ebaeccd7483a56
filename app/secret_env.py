"""A secret named by a pair of environment variables: the value itself, or a file holding it.

Shared by every secret Vigil reads this way (the API token, the action signing key), so they
all behave alike: both variables set is refused (a stale one cannot silently win), surrounding
whitespace and the newline editors add are ignored (e.g. a mounted Kubernetes secret), and a
short secret is refused with a hint to generate a proper one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["load_secret"]


def load_secret(value_env: str, file_env: str, *, what: str, min_bytes: int, error: type[Exception],
                environ: Mapping[str, str] | None = None, empty_means_unset: bool = True) -> bytes | None:
    """The secret from `value_env` or the file named by `file_env` (None when neither is set).

    Raises `error` (its message names the variable and what to do) when both are set, the file
    cannot be read, or the secret is shorter than `min_bytes`; `what` names the secret in it. With
    `empty_means_unset=False` a variable set to "" counts as set (and the empty secret is refused)."""
    env = os.environ if environ is None else environ
    value, path = env.get(value_env), env.get(file_env)
    if empty_means_unset:
        value, path = value or None, path or None
    if value is not None and path is not None:
        raise error(f"both {value_env} and {file_env} are set; set only one of them")
    if value is not None:
        secret, source = value.strip().encode(), value_env
    elif path is not None:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as exc:
            raise error(f"{file_env}={path}: cannot read the {what} file: {exc.strerror or exc}") from exc
        source = f"{file_env}={path}"
    else:
        return None
    if len(secret) < min_bytes:
        size = "is empty" if not secret else f"is {len(secret)} bytes"
        raise error(f"the {what} from {source} {size}; use at least {min_bytes} random bytes "
                    "(e.g. `openssl rand -hex 32`)")
    return secret
