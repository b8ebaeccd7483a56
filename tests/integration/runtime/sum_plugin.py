"""A plugin used by runtime integration tests (run in worker subprocesses).

Sums metric `x` per key into a table and emits the running total for every event, so a test can
compare the final table and the exact output stream with a reference computed from the input.
Topics come from env: VIGIL_TEST_SOURCE, VIGIL_TEST_OUT.
"""

from __future__ import annotations

import os

from app.runtime.agent import agent
from app.runtime.tables import Table

SOURCE = os.environ.get("VIGIL_TEST_SOURCE", "events")
OUT = os.environ.get("VIGIL_TEST_OUT", "sums-out")

sums = Table("sums", default=0.0)


@agent(SOURCE, name="summer", tables=[sums])
def summer(event: dict, ctx) -> None:
    if event.get("text") == "poison":
        raise ValueError("poison event")
    total = sums[ctx.key] + event["metrics"]["x"]
    sums[ctx.key] = total
    ctx.send(OUT, ctx.key, {"key": ctx.key, "offset": ctx.offset, "total": total})
