"""The per-copy loop of forwarding consumed records unchanged (`ctx.forward`, the routes' copies):
each record produced again with its raw key, raw value, headers and timestamp, counted in the
open commit epoch.

Compiled with the pipeline (app.native) and free of Kafka imports: it is given the producer's
`produce` and `poll`. Routes copy about a third of the events, so the loop's own cost per copy
matters: compiled, and calling `produce` with positional arguments (confluent-kafka parses
keyword arguments by name, measured ~0.3 µs more per call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from app.runtime.deliveries import DeliveryCallback, DeliveryTracker

__all__ = ["KeptRecord", "produce_copies"]

#: (topic, value, key, partition, headers, timestamp, on_delivery): a record kept to produce it again
KeptRecord = tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None, int, DeliveryCallback]
#: seconds to serve delivery reports when librdkafka's local queue is full
_FULL_QUEUE_POLL_S: Final = 0.05


def produce_copies(produce: Callable[..., Any], poll: Callable[[float], Any], topic: str, records: Sequence[Any],
                   deliveries: DeliveryTracker, kept: list[KeptRecord] | None) -> None:
    """Produce `records` (consumed records: raw_key, raw_value, headers, timestamp_ms) to `topic`
    with `produce` (confluent_kafka.Producer.produce), each counted in the open epoch of
    `deliveries` with its delivery callback; a full local queue is waited out with `poll`.
    `kept`: records also listed there (exactly-once keeps them until its transaction commits)."""
    on_delivery = deliveries.on_delivery
    produced = 0
    try:
        for r in records:
            value = r.raw_value
            key = r.raw_key
            headers = r.headers
            timestamp: int = r.timestamp_ms or 0  # librdkafka: 0 is "now"
            while True:
                try:
                    # confluent-kafka's positional order: topic, value, key, partition, callback
                    # (on_delivery's other name), on_delivery, timestamp, headers
                    produce(topic, value, key, -1, on_delivery, None, timestamp, headers)
                    break
                except BufferError:
                    poll(_FULL_QUEUE_POLL_S)  # let deliveries drain
            produced += 1
            if kept is not None:
                kept.append((topic, value, key, -1, headers, timestamp, on_delivery))
    finally:
        deliveries.count += produced
