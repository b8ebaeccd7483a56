"""Exactly-once commits in the background on the real Kafka (app.runtime.worker.output): the loop
takes records while a transaction commits, their outputs go into the next transaction, and a commit
that fails rewinds without any output twice."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from app.config import Settings
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.tables import Table
from app.runtime.worker import Worker, WorkerOptions
from app.runtime.worker.options import Guarantee
from app.runtime.worker.output import OutputProducer
from tests.conftest import wait_until
from tests.integration.runtime.kafka_helpers import json_values, produce_raw, read_topic, worker_thread

KEYS = 5


class HeldCommits:
    """Stands in front of the worker's producer: its next transaction commit can be held until the
    test releases it, or made to fail."""

    def __init__(self) -> None:
        self.producer: Any = None
        self.hold_next = False
        self.fail_next: KafkaException | None = None
        self.entered = threading.Event()
        self.released = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def commit_transaction(self, timeout: float) -> None:
        if self.hold_next:
            self.hold_next = False
            self.entered.set()
            assert self.released.wait(60), "the test did not release the commit"
        if self.fail_next is not None:
            fail, self.fail_next = self.fail_next, None
            raise fail
        self.producer.commit_transaction(timeout)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCommits]:
    """The producers the worker makes in this test stand behind one HeldCommits."""
    held = HeldCommits()
    start = OutputProducer.start

    def start_held(self: OutputProducer) -> None:
        start(self)
        held.producer = self.producer
        self.producer = held

    monkeypatch.setattr(OutputProducer, "start", start_held)
    yield held
    held.released.set()


def echo_agent(source: str, out: str) -> list[Agent]:
    """Counts records per key and sends each with its count."""
    reg = AgentRegistry()
    seen = Table("seen", default=0)

    @agent(source, tables=[seen], decode="json", registry=reg)
    def echo(value: dict[str, Any], ctx: Any) -> None:
        seen[ctx.key] += 1
        ctx.send(out, ctx.key, {"n": value["n"], "seen": seen[ctx.key]})

    return reg.agents()


def produce(settings: Settings, topic: str, numbers: range) -> None:
    produce_raw(settings, topic, [(f"k{n % KEYS}".encode(), orjson.dumps({"n": n})) for n in numbers])


def assert_each_once(outputs: list[dict[str, Any]], numbers: range) -> None:
    """Every number output once, and each key's counts 1, 2, ... once: no record counted twice."""
    assert sorted(o["n"] for o in outputs) == list(numbers)
    per_key = Counter((o["n"] % KEYS, o["seen"]) for o in outputs)
    assert set(per_key.values()) == {1}
    assert sorted(per_key) == sorted((k, i) for k in range(KEYS) for i in range(1, len(numbers) // KEYS + 1))


def eos_options() -> WorkerOptions:
    return WorkerOptions(app_id=f"bg-{uuid.uuid4().hex[:6]}", instance_id="w1", guarantee=Guarantee.EXACTLY_ONCE,
                         commit_interval_ms=100)


def hold_a_commit_with_records_behind(settings: Settings, source: str, out: str, held: HeldCommits,
                                      per_step: int, fail_with: KafkaException | None = None) -> None:
    """`per_step` records through and committed, the commit of the next `per_step` held (entered;
    failing with `fail_with` once released), and `per_step` more records produced behind it."""
    produce(settings, source, range(0, per_step))
    assert len(read_topic(settings, out, expect=per_step)) == per_step
    held.fail_next = fail_with
    held.hold_next = True
    produce(settings, source, range(per_step, 2 * per_step))
    assert held.entered.wait(60), "no commit after the second records"
    produce(settings, source, range(2 * per_step, 3 * per_step))


def test_background_commit__records_taken_while_it_runs_go_into_the_next_transaction(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path, held: HeldCommits) -> None:
    source, out = new_topic("src"), new_topic("out")
    with worker_thread(settings.model_copy(update={"state_dir": tmp_path}), echo_agent(source, out),
                       eos_options()) as worker:
        hold_a_commit_with_records_behind(settings, source, out, held, 10)
        # The loop goes on while the commit is held: the third records are processed meanwhile ...
        wait_until(lambda: worker.engine.stats["echo"].events_in == 30, message="records taken during the commit")
        assert worker.output.committing and not held.released.is_set()
        # ... and none of what the held transaction or the loop made since is visible yet.
        assert len(read_topic(settings, out, expect=10, timeout_s=5)) == 10
        held.released.set()
        outputs = json_values(read_topic(settings, out, expect=30))
        assert_each_once(outputs, range(30))
        wait_until(lambda: not worker.output.committing and not worker.engine.outputs,
                   message="the held outputs committed")
        assert worker.rewind_count == 0


def test_background_commit__a_failed_one_rewinds_and_no_record_is_output_or_counted_twice(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path, held: HeldCommits) -> None:
    source, out = new_topic("src"), new_topic("out")
    with worker_thread(settings.model_copy(update={"state_dir": tmp_path}), echo_agent(source, out),
                       eos_options()) as worker:
        failure = KafkaException(KafkaError(KafkaError.INVALID_TXN_STATE, "test: the commit failed",
                                            txn_requires_abort=True))
        hold_a_commit_with_records_behind(settings, source, out, held, 10, failure)  # fails once more were taken
        wait_until(lambda: worker.engine.stats["echo"].events_in >= 30, message="records taken during the commit")
        held.released.set()
        wait_until(lambda: worker.rewind_count == 1, message="the rewind after the failed commit")
        outputs = json_values(read_topic(settings, out, expect=30))
        assert_each_once(outputs, range(30))


def test_background_commit__an_awaiting_agent_call_finishes_one_that_ended_without_waiting_for_its_end(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path, held: HeldCommits) -> None:
    source, out = new_topic("src"), new_topic("out")
    reg = AgentRegistry()
    workers: list[Worker] = []
    inside = threading.Event()
    finished_inside: list[int] = []

    @agent(source, decode="json", registry=reg)
    async def slow(value: dict[str, Any], ctx: Any) -> None:
        if value["n"] == 2:  # runs while the commit of n=1 is held
            inside.set()
            before = workers[0].commit_count
            deadline = time.monotonic() + 30
            while workers[0].commit_count == before and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            finished_inside.append(workers[0].commit_count - before)
        ctx.send(out, ctx.key, {"n": value["n"], "seen": 1})

    with worker_thread(settings.model_copy(update={"state_dir": tmp_path}), reg.agents(), eos_options()) as worker:
        workers.append(worker)
        hold_a_commit_with_records_behind(settings, source, out, held, 1)
        assert inside.wait(60), "n=2 was not taken while the commit ran"
        held.released.set()
        outputs = json_values(read_topic(settings, out, expect=3))
        assert sorted(o["n"] for o in outputs) == [0, 1, 2]
        # The commit of n=1 was collected (its stores written) while the call of n=2 still awaited.
        assert finished_inside == [1]
        assert worker.rewind_count == 0
