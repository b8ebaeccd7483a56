"""Forwarding consumed records unchanged (ctx.forward): one entry for many copies in the engine,
expanded record by record for harnesses, and produced by the worker's producer with every copy
counted in its commit epoch (a copy's failed delivery is reported like any record's)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaException

from app.config import Settings
from app.runtime.agent import AgentRegistry, agent
from app.runtime.context import AgentContext, Forward, Output, each_output
from app.runtime.copies import produce_copies
from app.runtime.deliveries import DeliveryTracker
from app.runtime.engine import InRecord
from app.runtime.metrics import WorkerMetrics
from app.runtime.testing import AgentHarness
from app.runtime.worker.bus import BusState, KafkaRetry
from app.runtime.worker.commits import CommitPoints
from app.runtime.worker.output import OutputProducer


def record(offset: int, *, headers: list[tuple[str, bytes]] | None = None) -> InRecord:
    return InRecord(f"k{offset}", {"n": offset}, offset, 1000 + offset, "vigil.Event", f"raw{offset}".encode(),
                    f"k{offset}".encode(), headers)


def test_a_forward_expands_to_one_output_per_record_with_raw_key_value_headers_and_timestamp() -> None:
    headers = [("traceparent", b"00-1")]
    fwd = Forward("copies", [record(1, headers=headers), record(2)])
    assert fwd.outputs() == [Output("copies", b"k1", b"raw1", None, headers, 1001),
                             Output("copies", b"k2", b"raw2", None, None, 1002)]
    sent = Output("other", "key", {"v": 1})
    assert list(each_output([sent, fwd])) == [sent, *fwd.outputs()]


def test_forwarded_records_reach_the_harness_one_by_one_and_a_failed_batch_drops_them() -> None:
    registry = AgentRegistry()
    fail = {"now": False}

    @agent("events", name="copier", batch=True, registry=registry)
    def copier(values: list[Any], ctx: AgentContext) -> None:
        ctx.forward("copies", ctx.records)
        ctx.forward("none", [])  # nothing to forward: no entry
        if fail["now"]:
            raise RuntimeError("after forwarding")

    harness = AgentHarness([copier])
    harness.engine.process("events", 0, [record(1), record(2)])
    harness._drain()
    assert [(o.topic, o.key, o.value, o.timestamp_ms) for o in harness.outputs()] == [
        ("copies", b"k1", b"raw1", 1001), ("copies", b"k2", b"raw2", 1002)]
    harness.clear_outputs()
    fail["now"] = True  # the batch fails, then each record alone (dead-lettered): nothing forwarded
    harness.engine.process("events", 0, [record(3)])
    harness._drain()
    assert harness.outputs() == [] and len(harness.dead_letters) == 1


class RecordingProducer:
    """Stands in for confluent_kafka.Producer: records produce() calls; the first produce of
    `full_once` raises BufferError (the local queue is full) like librdkafka does."""

    def __init__(self, *, full_once: bool = False) -> None:
        self.produced: list[tuple[Any, ...]] = []
        self.polls = 0
        self.full_once = full_once
        self.transactions = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                callback: Any = None, on_delivery: Any = None, timestamp: int = 0, headers: Any = None) -> None:
        """confluent_kafka.Producer.produce's parameters, in its positional order."""
        on_delivery = callback or on_delivery
        if self.full_once:
            self.full_once = False
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value, key, headers, timestamp, on_delivery))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def begin_transaction(self) -> None:
        self.transactions += 1


def output_producer(producer: RecordingProducer, *, eos: bool) -> OutputProducer:
    bus = BusState()
    out = OutputProducer(Settings(), transactional_id="t-1" if eos else None, bus=bus,
                         retry=KafkaRetry(bus, stopping=threading.Event(), max_backoff_s=1.0),
                         metrics=WorkerMetrics(),
                         commits=CommitPoints(changelog_of=lambda t: "cl", produce_changelog=lambda *a, **k: None))
    out.producer = producer
    return out


class FakeMessage:
    def topic(self) -> str:
        return "p-copies"

    def partition(self) -> int:
        return 3


class FakeError:
    def str(self) -> str:
        return "Broker: Message size too large"


def test_produce_forward_counts_every_copy_in_the_epoch_and_a_failed_copy_is_an_error() -> None:
    producer = RecordingProducer(full_once=True)
    out = output_producer(producer, eos=False)
    headers = [("h", b"1")]
    out.produce_forward("p-copies", [record(1, headers=headers), record(2)])
    deliveries = out.commits.deliveries
    assert [p[:5] for p in producer.produced] == [("p-copies", b"raw1", b"k1", headers, 1001),
                                                  ("p-copies", b"raw2", b"k2", None, 1002)]
    assert producer.polls == 1  # the full queue was drained, the copy produced again (not lost)
    assert deliveries.count == 2 and producer.transactions == 0
    epoch = deliveries.close_epoch()
    on_delivery = producer.produced[0][5]
    on_delivery(None, FakeMessage())
    assert not deliveries.acknowledged(epoch)  # one copy still unacknowledged: the commit waits
    on_delivery(FakeError(), FakeMessage())
    assert deliveries.acknowledged(epoch)
    assert deliveries.errors == ["p-copies[3]: Broker: Message size too large"]  # the commit fails, not passes


def test_copies_produced_before_a_failing_produce_are_counted_and_the_failure_raised() -> None:
    deliveries = DeliveryTracker()
    produced: list[bytes | None] = []

    def produce(topic: str, value: bytes | None, key: bytes | None, partition: int, callback: Any,
                on_delivery: Any, timestamp: int, headers: Any) -> None:
        if value == b"raw3":
            raise KafkaException("Local: Fatal error")
        produced.append(value)

    with pytest.raises(KafkaException):
        produce_copies(produce, lambda timeout: 0, "p-copies", [record(1), record(2), record(3), record(4)],
                       deliveries, None)
    assert produced == [b"raw1", b"raw2"] and deliveries.count == 2  # the epoch waits for exactly those


def test_produce_forward_under_exactly_once_opens_the_transaction_and_keeps_copies_for_a_recommit() -> None:
    producer = RecordingProducer()
    out = output_producer(producer, eos=True)
    out.produce_forward("p-copies", [record(1), record(2)])
    assert producer.transactions == 1 and out.in_txn
    assert [(r[0], r[1], r[2], r[3]) for r in out._txn_records] == [("p-copies", b"raw1", b"k1", -1),
                                                                    ("p-copies", b"raw2", b"k2", -1)]


def test_batch_agents_of_one_topic_each_get_the_batch_values_and_event_times_as_their_own_lists() -> None:
    registry = AgentRegistry()
    seen: dict[str, tuple[list[Any], list[int], int]] = {}

    def make(name: str) -> Any:
        @agent("events", name=name, batch=True, registry=registry)
        def fn(values: list[Any], ctx: AgentContext) -> None:
            seen[name] = (list(values), list(ctx.event_times), ctx.timestamp)
            values.clear()  # an agent may change its lists: the next agent must not see it
            ctx.event_times.clear()
        return fn

    harness = AgentHarness([make("first"), make("second")])
    harness.engine.process("events", 0, [record(1), record(2)])
    assert seen["first"] == seen["second"] == ([{"n": 1}, {"n": 2}], [1001, 1002], 1002)
