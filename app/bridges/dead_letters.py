"""The bridges' way to the dead-letter topic, rate-limited (app.dead_letter_limit).

`DeadLetterGate.send` writes a rejected request or message through the sink while its (source,
reason) bucket has room, and otherwise only counts it; summaries of what was held back are written
as dead letters of their own (`vigil.reason=summarised`, a JSON body saying how many, from where,
why, and between which times) by a background task once per summary interval, and all that are left
when the bridge stops. The rejection itself is answered, counted and logged by the bridge as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app.bridges.sink import EventSink
from app.dead_letter_limit import SUMMARY_REASON, DeadLetterLimiter, DeadLetterLimits

__all__ = ["DeadLetterGate", "wall_clock_ms"]

log = logging.getLogger(__name__)

#: How often the background task looks for summaries that are due (they are due per interval).
_TICK_S = 1.0


def wall_clock_ms() -> int:
    """Wall-clock time in ms (summaries name wall-clock times)."""
    return int(time.time() * 1000)


class DeadLetterGate:
    """Rate-limited dead letters of one bridge; see the module docstring."""

    def __init__(self, sink: EventSink, limits: DeadLetterLimits | None = None, *,
                 clock_ms: Callable[[], int] = wall_clock_ms, tick_s: float = _TICK_S) -> None:
        self.sink = sink
        self.limiter = DeadLetterLimiter(limits)
        self.clock_ms = clock_ms
        self.tick_s = tick_s
        #: dead letters written / summary records written since the start
        self.written = 0
        self.summaries = 0
        self._task: asyncio.Task[None] | None = None

    def send(self, source: str, reason: str, raw: bytes, *, detail: str = "", peer: str | None = None) -> bool:
        """Write a dead letter if its bucket has room (True); else count it for a summary (False)."""
        if not self.limiter.admit(source, reason, self.clock_ms()):
            return False
        self.sink.dead_letter(source, reason, raw, detail=detail, peer=peer)
        self.written += 1
        return True

    def write_summaries(self, *, everything: bool = False) -> int:
        """Write the summaries that are due (all with `everything`); how many were written."""
        summaries = self.limiter.due(self.clock_ms(), everything=everything)
        for summary in summaries:
            self.sink.dead_letter(summary.source, SUMMARY_REASON, summary.value(), detail=summary.text())
            log.warning("%s", summary.text())
        self.summaries += len(summaries)
        return len(summaries)

    def start(self) -> None:
        """Write due summaries from a task on the running loop until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dead-letter-summaries")

    async def stop(self) -> None:
        """Stop the task and write every summary still pending (before the sink is flushed)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.write_summaries(everything=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.write_summaries()
            except Exception:  # the sink never raises from dead_letter; a bug here must not end the task
                log.exception("writing dead-letter summaries failed; continuing")
