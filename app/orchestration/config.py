"""executor.yaml's `orchestration:` section: how `vigil executor` runs runbooks and rolls.

    orchestration:
      enabled: true            # run the orchestrator agent on `runs` beside the executor
      slice: 5s                # one turn of the orchestrator starts steps for at most this long
      max_in_flight: 200       # steps running at once per partition of `runs`
      members_wait: 60s        # how long a roll waits for the members view before it fails
      retention: 7d            # finished runs are kept (and shown) this long
      workers: [http://127.0.0.1:8088]   # where waits read status and metrics (default: VIGIL_WORKER_URL)
      rules_dir: rules         # where runbooks are defined (default: the settings' rules_dir)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from app.durations import PositiveDurationMs

__all__ = ["OrchestrationConfig", "worker_urls_from_env"]




def worker_urls_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """VIGIL_WORKER_URL (comma or space separated), else the local worker."""
    env = os.environ if environ is None else environ
    urls = [u.rstrip("/") for u in re.split(r"[,\s]+", env.get("VIGIL_WORKER_URL", "")) if u]
    return urls or ["http://127.0.0.1:8088"]


class OrchestrationConfig(BaseModel):
    """See the module docstring."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    enabled: bool = True
    slice_ms: PositiveDurationMs = Field(5_000, alias="slice")
    max_in_flight: int = Field(200, ge=1, le=10_000)
    members_wait_ms: PositiveDurationMs = Field(60_000, alias="members_wait")
    retention_ms: PositiveDurationMs = Field(7 * 86_400_000, alias="retention")
    workers: list[str] = Field(default_factory=worker_urls_from_env)
    rules_dir: Path | None = None
    #: lanes shown per run in run-states (a larger roll is summarised beyond)
    snapshot_lanes: int = Field(2_000, ge=1, le=50_000)
