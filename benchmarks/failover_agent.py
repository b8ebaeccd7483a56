"""The agent benchmarks/failover.py runs in its `vigil worker` processes (`--plugins failover_agent`).

Per identity it keeps a count and the last event id in a changelogged table (the state a failover
must carry over), and for every event it sends one output: `b"<source partition> <event id>"`, so
the benchmark knows exactly which input each output stands for and from which source partition it
came (the built-in pipeline sends outputs only on transitions and windows, which cannot be counted
per event). Topics come from the environment: VIGIL_FAILOVER_SOURCE, VIGIL_FAILOVER_OUT (logical
names; the worker applies the topic prefix).
"""

from __future__ import annotations

import os
from typing import Any

from app.runtime.agent import agent
from app.runtime.tables import Table

__all__ = ["TABLE", "counts", "probe"]

SOURCE = os.environ.get("VIGIL_FAILOVER_SOURCE", "events")
OUT = os.environ.get("VIGIL_FAILOVER_OUT", "failover-out")
#: the table's name: its changelog is `<app id>-counts-changelog`
TABLE = "counts"

counts = Table(TABLE, default=None)


@agent(SOURCE, name="failover_probe", tables=[counts])
def probe(event: dict[str, Any], ctx: Any) -> None:
    seen = counts[ctx.key]
    counts[ctx.key] = {"n": 1 if seen is None else seen["n"] + 1, "last": event["id"]}
    ctx.send(OUT, ctx.key, f"{ctx.partition} {event['id']}".encode())
