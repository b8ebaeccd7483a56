"""The action ledger: what the executor knows about each action id, and what to do when it meets
an id again. Pure: entries are JSON-compatible dicts kept in the executor's `ledger` table.

Lifecycle of an id:   (absent) ──run──> started ──(result sent)──> finished
"started" is made durable (a commit) before the plugin runs (for an idempotent plugin only when
asked, see needs_durable_start); "finished" is written together with
the ActionResult (one commit; one Kafka transaction under exactly-once). So after a crash:

    absent                 never ran                                      -> RUN
    started                may have run, no result published              -> RESUME if the plugin is
                                                                             idempotent, else INTERRUPTED
                                                                             (reported FAILED, not re-run)
    finished               ran and its result was published               -> DUPLICATE
    (running in this batch) the same id twice in one batch                -> DUPLICATE
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["FINISHED", "STARTED", "Decision", "decide", "finished_entry", "needs_durable_start", "started_entry"]

STARTED = "started"
FINISHED = "finished"


class Decision(str, Enum):
    RUN = "run"
    RESUME = "resume"
    INTERRUPTED = "interrupted"
    DUPLICATE = "duplicate"


def decide(entry: dict[str, Any] | None, *, idempotent: bool, running_here: bool = False) -> Decision:
    """What to do with an action whose id has ledger `entry` (None if unknown)."""
    if running_here:
        return Decision.DUPLICATE
    if entry is None:
        return Decision.RUN
    if entry.get("state") == FINISHED:
        return Decision.DUPLICATE
    return Decision.RESUME if idempotent else Decision.INTERRUPTED


def needs_durable_start(*, idempotent: bool, durable_idempotent: bool) -> bool:
    """Whether "started" must be committed before the plugin runs. Always for a plugin that is not
    idempotent (after a crash it must be INTERRUPTED, not run again). For an idempotent one only
    when asked (`durable_idempotent`): without it a crash loses the "started", and the action is run
    again with the same id (RUN rather than RESUME), which an idempotent plugin makes harmless."""
    return durable_idempotent or not idempotent


def started_entry(*, attempts: int, started_ms: int, now_ms: int) -> dict[str, Any]:
    """The entry written (and committed) before an attempt runs."""
    return {"state": STARTED, "attempts": attempts, "started_ms": started_ms, "updated_ms": now_ms}


def finished_entry(*, status: str, attempts: int, started_ms: int | None, now_ms: int) -> dict[str, Any]:
    """The entry written with the action's one result."""
    return {"state": FINISHED, "status": status, "attempts": attempts, "started_ms": started_ms,
            "finished_ms": now_ms, "updated_ms": now_ms}
