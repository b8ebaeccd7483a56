"""HMAC signatures of actions: the rules stage signs, executors verify (shared key from env/file).

The signature covers every field that decides what runs and where, so a tampered or forged
action on the actions topic is rejected by an executor that has the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

__all__ = ["SIGNED_FIELDS", "sign_action", "signing_payload", "verify_action"]

SIGNED_FIELDS = ("id", "time", "rule", "type", "target", "params", "group_key", "event_id", "trace_id", "deadline")


def signing_payload(action: dict[str, Any]) -> bytes:
    """Canonical bytes of the signed fields of an Action record (dict shaped like vigil.Action).

    A non-empty `chain` is signed too, appended, and so is a non-empty `run`: an action without them
    signs as before the fields existed, so stages and executors of either version agree on ordinary
    actions."""
    values: list[Any] = [action.get(f) for f in SIGNED_FIELDS]
    if action.get("chain"):
        values.append(list(action["chain"]))
    if action.get("run"):  # likewise: only a step of an orchestration run has one
        values.append({"run": action["run"]})
    return json.dumps(values, separators=(",", ":"), sort_keys=True).encode()


def sign_action(action: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of the action's signed fields."""
    return hmac.new(key, signing_payload(action), hashlib.sha256).hexdigest()


def verify_action(action: dict[str, Any], key: bytes) -> bool:
    """True if the action carries a valid signature for `key` (constant-time comparison)."""
    signature = action.get("signature")
    return bool(signature) and hmac.compare_digest(str(signature), sign_action(action, key))
