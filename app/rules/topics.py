"""Logical names of the topics the rules stage reads and writes (shared with the CLI readers)."""

from __future__ import annotations

from typing import Final

__all__ = ["ACTIONS_DLQ_TOPIC", "ACTIONS_TOPIC", "REPARTITION_TOPIC", "RESULTS_TOPIC", "SILENCES_TOPIC",
           "SUPPRESSED_TOPIC"]

#: internal: events and alerts forwarded by group key (same partition count as `events`)
REPARTITION_TOPIC: Final = "rules-repartition"
#: vigil.Action records, keyed by target
ACTIONS_TOPIC: Final = "actions"
#: vigil.ActionResult records (written by executors)
RESULTS_TOPIC: Final = "action-results"
#: JSON: actions whose template failed, with the reason
ACTIONS_DLQ_TOPIC: Final = "actions-dlq"
#: JSON: actions a silence covered ({"action": ..., "silence": ..., "time": ...}) or the storm guard
#: held back ({"action": ..., "storm": ..., "time": ...}), keyed by target
SUPPRESSED_TOPIC: Final = "actions-suppressed"
#: compacted JSON silences, key = silence id
SILENCES_TOPIC: Final = "silences"
