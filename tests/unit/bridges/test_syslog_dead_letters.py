"""A flood of garbage into the syslog bridge (real TCP on 127.0.0.1, in-memory sink): the dead-letter
topic gets the bucket's worth and one summary per reason; every valid line still arrives."""

from __future__ import annotations

import asyncio
import json

from app.bridges.config import BridgeConfig
from app.bridges.dead_letters import DeadLetterGate
from app.bridges.sink import MemorySink
from app.bridges.syslog import SOURCE, SyslogServer
from app.dead_letter_limit import SUMMARY_REASON, DeadLetterLimits

from .support import wait_until

LISTENS = ["tcp://127.0.0.1:0"]


def test_a_flood_of_garbage__is_rate_limited_and_valid_lines_all_arrive() -> None:
    sink = MemorySink()
    clock_ms = 1_700_000_000_000  # time stands still: the bucket never refills during the flood
    gate = DeadLetterGate(sink, DeadLetterLimits(burst=10, rate_per_s=1), clock_ms=lambda: clock_ms)
    server = SyslogServer(sink, LISTENS, BridgeConfig(syslog_listen=LISTENS), dead_letters=gate)
    lines = []
    for n in range(1000):
        lines.append(b"\xff\xfe garbage %d" % n)  # not UTF-8
        if n % 10 == 0:
            lines.append(b"<13>Mar 19 10:00:00 h1 app: valid %d" % n)
    lines.append(b"<999>out of range")  # another reason: a bucket of its own

    async def main() -> None:
        await server.start()
        try:
            port = server.bound[0].port
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\n".join(lines) + b"\n")
            await writer.drain()
            writer.close()
            await wait_until(lambda: server.metrics.accepted_count(SOURCE) == 100
                             and server.metrics.rejected_count(SOURCE, "not_utf8") == 1000
                             and server.metrics.rejected_count(SOURCE, "invalid") == 1, sink=sink)
        finally:
            await server.stop()  # writes the summaries still pending

    asyncio.run(main())
    assert sorted(e.text for e in sink.events) == sorted(f"valid {n}" for n in range(0, 1000, 10))
    written = [d for d in sink.dead_letters if d.reason != SUMMARY_REASON]
    summaries = [d for d in sink.dead_letters if d.reason == SUMMARY_REASON]
    assert [(d.reason, d.value) for d in written] == [("not_utf8", b"\xff\xfe garbage %d" % n) for n in range(10)] + [
        ("invalid", b"<999>out of range")]
    (summary,) = summaries
    assert (summary.source, json.loads(summary.value)["summarised"], json.loads(summary.value)["reason"]) == (
        "syslog/tcp", 990, "not_utf8")
    # Every rejected line is accounted for: written, or counted and summarised.
    assert gate.limiter.summarised("syslog/tcp", "not_utf8") == 990
    assert server.metrics.registry.get_sample_value(
        "vigil_dead_letters_summarised_total", {"source": "syslog/tcp", "reason": "not_utf8"}) == 990
