"""The `runs` topic (commands to the orchestrator) and the compacted `run-states` topic (what each
run looks like), both JSON keyed by run id, so a run's commands and state share a partition.

    {"kind": "start", "run": ID, "time": ms, "name": ..., "runbook": {...}, "params": {...}, "target": ...,
     "roll": {"members": {...}, "concurrency": 1, "splay_ms": 0, "max_failures": 0} | null,
     "rule": ..., "trace_id": ..., "event_id": ..., "group_key": ..., "chain": [...], "by": ...}
    {"kind": "approve", "run": ID, "time": ms, "by": "alice", "approved": true, "comment": "", "step": null,
     "member": null}
    {"kind": "cancel" | "pause" | "resume", "run": ID, "time": ms, "by": "alice", "reason": ""}

With an action signing key configured (VIGIL_ACTION_SIGNING_KEY), every command carries
`signature` (HMAC-SHA256 over the canonical JSON of the rest) and the orchestrator refuses the
ones without a valid one, as executors refuse unsigned actions.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "COMMAND_KINDS",
    "RUNS_TOPIC",
    "RUN_STATES_TOPIC",
    "command",
    "sign_record",
    "user_name",
    "verify_record",
]

RUNS_TOPIC: Final = "runs"
RUN_STATES_TOPIC: Final = "run-states"
COMMAND_KINDS: Final = ("start", "approve", "cancel", "pause", "resume")


def _payload(record: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign_record(record: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """The record with its signature (unchanged without a key)."""
    if key is None:
        return record
    return {**record, "signature": hmac.new(key, _payload(record), hashlib.sha256).hexdigest()}


def verify_record(record: Mapping[str, Any], key: bytes | None) -> bool:
    """True without a key; with one, only for a valid signature (constant-time)."""
    if key is None:
        return True
    signature = record.get("signature")
    expected = hmac.new(key, _payload(record), hashlib.sha256).hexdigest()
    return isinstance(signature, str) and hmac.compare_digest(signature, expected)


def user_name() -> str:
    """Who is giving a command from this shell: VIGIL_USER, else the login name."""
    try:
        return os.environ.get("VIGIL_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def command(kind: str, run_id: str, *, by: str, **fields: Any) -> dict[str, Any]:
    """A command record for the `runs` topic (not signed yet)."""
    if kind not in COMMAND_KINDS:
        raise ValueError(f"unknown command {kind!r}; use one of {', '.join(COMMAND_KINDS)}")
    return {"kind": kind, "run": run_id, "time": int(time.time() * 1000), "by": by, **fields}
