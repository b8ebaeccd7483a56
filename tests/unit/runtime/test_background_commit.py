"""Exactly-once commits in the background (app.runtime.worker.output): the producer is the
committer thread's until the worker collects the commit, a failure is raised when collected, and the
outputs encoded ahead of a flush are used only while they still match the engine's list."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from app.runtime.context import Output
from app.runtime.engine import InRecord
from app.runtime.metrics import WorkerMetrics
from app.runtime.worker.bus import BusState, KafkaRetry
from app.runtime.worker.commits import CommitPoints
from app.runtime.worker.loop import encoded_prefix
from app.runtime.worker.output import OutputProducer


class FakeProducer:
    """A transactional producer that refuses records while a commit runs (as librdkafka does) and
    whose commit waits until the test lets it end."""

    def __init__(self) -> None:
        self.open: list[bytes | None] = []
        self.committed: list[list[bytes | None]] = []
        self.committing = False
        self.in_commit = threading.Event()
        self.release = threading.Event()
        self.fail: KafkaException | None = None
        self.polls = 0

    def begin_transaction(self) -> None:
        self.open = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **_: Any) -> None:
        if self.committing:
            raise KafkaException(KafkaError(KafkaError._STATE, "Producing not allowed in transactional state "
                                                               "BeginCommit"))
        self.open.append(value)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        self.committing = True
        self.in_commit.set()
        try:
            assert self.release.wait(10), "the test did not release the commit"
            if self.fail is not None:
                raise self.fail
            self.committed.append(self.open)
            self.open = []
        finally:
            self.committing = False

    def abort_transaction(self, timeout: float) -> None:
        self.open = []

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def transactional(fake: FakeProducer) -> OutputProducer:
    out = OutputProducer(None, transactional_id="t-1", bus=BusState(),  # type: ignore[arg-type]
                         retry=KafkaRetry(BusState(), stopping=threading.Event(), max_backoff_s=0.01),
                         metrics=WorkerMetrics(),
                         commits=CommitPoints(changelog_of=lambda t: t.name, produce_changelog=lambda *a: None))
    out.producer = fake
    return out


def offsets() -> list[TopicPartition]:
    return [TopicPartition("src", 0, 10)]


def test_background_commit__the_producer_waits_for_it_and_the_next_records_go_into_the_next_transaction() -> None:
    fake = FakeProducer()
    out = transactional(fake)
    out.produce("out", b"a", None)
    out.begin_commit(1, offsets(), lambda: None)
    assert fake.in_commit.wait(10)
    assert out.committing and not out.commit_ended
    with pytest.raises(RuntimeError, match="commits in the background"):
        out.produce("out", b"b", None)
    with pytest.raises(RuntimeError, match="commits in the background"):
        out.produce_forward("copies", [InRecord("k", None, 5, 1_000, raw_value=b"c", raw_key=b"k")])
    with pytest.raises(RuntimeError, match="commits in the background"):
        out.begin_commit(2, offsets(), lambda: None)
    polls = fake.polls
    out.poll()  # the commit serves delivery reports meanwhile: no poll from another thread
    assert fake.polls == polls
    fake.release.set()
    out.end_commit()
    assert not out.committing
    out.produce("out", b"b", None)
    out.commit_transaction(2, offsets(), lambda: None)
    assert fake.committed == [[b"a"], [b"b"]]


def failing_commit_begun() -> tuple[FakeProducer, OutputProducer]:
    """A transaction with one record whose background commit has begun and will fail (released)."""
    fake = FakeProducer()
    fake.fail = KafkaException(KafkaError(KafkaError.INVALID_TXN_STATE, "test: the commit failed",
                                          txn_requires_abort=True))
    out = transactional(fake)
    out.produce("out", b"a", None)
    out.begin_commit(1, offsets(), lambda: None)
    fake.release.set()
    return fake, out


def test_background_commit__a_failure_is_raised_when_collected_and_the_transaction_can_be_aborted() -> None:
    fake, out = failing_commit_begun()
    with pytest.raises(KafkaException, match="the commit failed"):
        out.end_commit()
    assert out.in_txn and not out.committing
    out.abort()  # what the worker's rewind does next
    assert fake.committed == [] and not out.in_txn


def test_background_commit__abandoned_it_is_waited_for_and_its_failure_only_logged(caplog) -> None:
    _, out = failing_commit_begun()
    out.abandon_commit()
    assert not out.committing
    assert "committing in the background failed" in caplog.text
    out.close()


def output(n: int) -> Output:
    return Output("out", f"k{n}", {"n": n}, None, None, None)


def test_encoded_prefix__matches_while_the_list_only_grew_and_not_once_it_was_cut() -> None:
    outputs = [output(0), output(1)]
    ahead = [(outputs[0], b"0"), (outputs[1], b"1")]
    assert encoded_prefix([], outputs)
    assert encoded_prefix(ahead, outputs)
    outputs.append(output(2))  # a later send
    assert encoded_prefix(ahead, outputs)
    del outputs[1:]  # a call rolled back ...
    assert not encoded_prefix(ahead, outputs)
    outputs.extend([output(3), output(4)])  # ... and sent others: as long as before, not the same
    assert not encoded_prefix(ahead, outputs)
    assert not encoded_prefix(ahead, [])  # taken
