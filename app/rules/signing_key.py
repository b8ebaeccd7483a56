"""The shared HMAC key for action signatures: the rules stage signs with it, executors verify with it.

One source for both sides, so they cannot disagree about where the key comes from:
    VIGIL_ACTION_SIGNING_KEY        the key itself (its UTF-8 bytes)
    VIGIL_ACTION_SIGNING_KEY_FILE   a file holding the key (surrounding whitespace and the trailing
                                    newline editors add are ignored; e.g. a mounted Kubernetes secret)
Neither set means "no key": the stage sends unsigned actions, and an executor decides whether it
accepts them. Setting both is refused, so a stale variable cannot silently win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from app.secret_env import load_secret

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "MIN_KEY_BYTES", "SigningKeyError", "load_signing_key"]

KEY_ENV: Final = "VIGIL_ACTION_SIGNING_KEY"
KEY_FILE_ENV: Final = "VIGIL_ACTION_SIGNING_KEY_FILE"
#: Shorter keys are guessable; HMAC-SHA256 wants at least its output size of entropy, 16 bytes is a floor.
MIN_KEY_BYTES: Final = 16


class SigningKeyError(ValueError):
    """The signing key is configured but unusable; the message says which variable and what to do."""


def load_signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The action signing key from the environment (see the module doc), or None when none is set.

    Raises SigningKeyError when both variables are set, the file cannot be read, or the key is
    empty or shorter than MIN_KEY_BYTES."""
    return load_secret(KEY_ENV, KEY_FILE_ENV, what="action signing key", min_bytes=MIN_KEY_BYTES,
                       error=SigningKeyError, environ=environ, empty_means_unset=False)
