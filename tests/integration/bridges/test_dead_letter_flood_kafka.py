"""A flood of garbage into the syslog bridge on the real Kafka (issue 18.5): events-dlq gets the
bucket's worth per reason plus one summary each, the counter accounts for every line, and every
valid line interleaved with the garbage arrives on the events topic."""

from __future__ import annotations

import asyncio
import json

from app.bridges.config import BridgeConfig
from app.bridges.dead_letters import DeadLetterGate
from app.bridges.kafka_sink import KafkaEventSink
from app.bridges.syslog import SOURCE, SyslogServer
from app.config import Settings
from app.dead_letter_limit import SUMMARY_REASON, DeadLetterLimits
from tests.conftest import wait_until

from .conftest import LoopThread, read_dead_letters, read_events

LISTENS = ["tcp://127.0.0.1:0"]
BURST = 100


def test_ten_thousand_garbage_lines__a_bucket_of_dead_letters_and_summaries_and_every_valid_line(
        isolated_settings: Settings, kafka_sink: KafkaEventSink, bridge_loop: LoopThread) -> None:
    frozen_ms = 1_700_000_000_000  # the bucket does not refill during the flood: exact numbers
    gate = DeadLetterGate(kafka_sink, DeadLetterLimits(burst=BURST, rate_per_s=10), clock_ms=lambda: frozen_ms)
    server = SyslogServer(kafka_sink, LISTENS, BridgeConfig(syslog_listen=LISTENS), dead_letters=gate)
    bridge_loop.run(server.start())
    lines = []
    for n in range(10_000):
        lines.append(b"\xff\xfe not utf-8 %d" % n if n % 2 else b"<999>bad pri %d" % n)
        if n % 10 == 0:
            lines.append(b"<13>Mar 19 10:00:00 h%d app: valid %d" % (n % 7, n))

    async def send() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.bound[0].port)
        writer.write(b"\n".join(lines) + b"\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    try:
        bridge_loop.run(send())
        wait_until(lambda: server.metrics.rejected_count(SOURCE, "not_utf8") + server.metrics.rejected_count(
            SOURCE, "invalid") == 10_000 and server.metrics.accepted_count(SOURCE) == 1_000, message="the flood read")
    finally:
        bridge_loop.run(server.stop())  # writes the pending summaries, flushes

    letters = read_dead_letters(isolated_settings, expect=2 * BURST + 2)
    written = [letter for letter in letters if letter.headers["vigil.reason"] != SUMMARY_REASON]
    summaries = [json.loads(letter.value) for letter in letters if letter.headers["vigil.reason"] == SUMMARY_REASON]
    assert len(letters) == 2 * BURST + 2
    assert sorted(letter.headers["vigil.reason"] for letter in written) == ["invalid"] * BURST + ["not_utf8"] * BURST
    assert sorted((s["reason"], s["summarised"]) for s in summaries) == [("invalid", 4_900), ("not_utf8", 4_900)]
    # Every garbage line is accounted for: written, or counted and summarised.
    counted = {reason: server.metrics.registry.get_sample_value(
        "vigil_dead_letters_summarised_total", {"source": "syslog/tcp", "reason": reason}) for reason in
        ("invalid", "not_utf8")}
    assert counted == {"invalid": 4_900, "not_utf8": 4_900}
    assert len(written) + sum(count or 0 for count in counted.values()) == 10_000

    events = [record for _, record in read_events(isolated_settings, expect=1_000)]
    assert sorted(record["text"] for record in events) == sorted(f"valid {n}" for n in range(0, 10_000, 10))
