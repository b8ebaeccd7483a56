"""The worker's producer: every record the worker sends (outputs, dead letters, changelog records)
goes through it, counted in the commit epoch it belongs to (app.runtime.worker.commits).

Under exactly-once it also runs the transactions. The records of the open transaction are kept until
it commits: when Kafka aborts the transaction (a coordinator that restarted, a request that timed
out) or fences the producer, the transaction is aborted here and the same records are produced again
in a new one with the same offsets, so the work is kept (an executor keeps the results of actions it
ran). A lost group membership, or a transaction that keeps failing, is raised for the worker to
rewind instead.

A commit may run in the background (`begin_commit`, on a thread of its own: librdkafka's
transactional calls release the GIL), so the worker's loop and its agents go on meanwhile (an
orchestrator's steps in flight: a commit of 55-157 ms at load 3-7 was the p99 of their scheduling
overhead). librdkafka refuses produce() from the moment a commit begins until it ends ("Producing not
allowed in transactional state BeginCommit"), so nothing else may use the producer until the worker
has collected the commit (`end_commit`): what is made meanwhile waits in the engine, and goes into
the next transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from app.bus.clients import make_producer
from app.bus.faults import TxnAction, error_of, is_membership_lost, is_transient, txn_action
from app.config import Settings
from app.runtime.context import ConsumedRecord
from app.runtime.copies import KeptRecord, produce_copies
from app.runtime.deliveries import DeliveryCallback
from app.runtime.metrics import WorkerMetrics
from app.runtime.worker.bus import BusState, KafkaRetry
from app.runtime.worker.commits import CommitPoints

__all__ = ["ABORT_S", "MESSAGE_TIMEOUT_MS", "RECONNECT_CONFIG", "TRANSACTION_TIMEOUT_MS", "OutputProducer"]

log = logging.getLogger(__name__)

#: How long a producer keeps a record it cannot deliver (librdkafka: 5 min). Long enough to ride
#: through a broker restart, shorter than max.poll.interval.ms, so a worker blocked on a flush in a
#: long outage fails the delivery (and rewinds) before the group gives its partitions away.
MESSAGE_TIMEOUT_MS = 120_000
#: After a broker restart, reconnect within 2 s (librdkafka backs off up to 10 s), and give up on a
#: request to a broker that went away after 15 s (not 60), so a transactional call is made again to
#: the restarted coordinator well within the transaction timeout (measured on the outage tests: with
#: the defaults a commit hung 60 s after a 10-s broker restart).
RECONNECT_CONFIG: dict[str, Any] = {"reconnect.backoff.max.ms": 2000, "socket.timeout.ms": 15000}
#: Exactly-once: a transaction open longer is aborted by the broker (then its records are sent again).
TRANSACTION_TIMEOUT_MS = 60_000
#: One attempt of a transactional call: short, so that after an outage a call that librdkafka is still
#: backing off inside is given up and made again (a timed-out commit_transaction may be called again).
TXN_CALL_S = 10.0
#: Exactly-once: how long an aborted transaction's records are committed again in new transactions
#: before the worker gives up and rewinds.
RECOMMIT_S = 300.0
#: How long aborting a transaction is retried before the producer is made anew (its init_transactions
#: aborts the transaction on the broker). Measured on the outage tests: after a broker restart a
#: producer's request to its transaction coordinator may stay queued for good ("1 out-queue"), and
#: abort_transaction timed out for ever.
ABORT_S = 30.0
#: How long sending the offsets to a transaction is retried before the transaction is made again.
SEND_OFFSETS_S = 30.0


def _retry_in_place(exc: BaseException) -> bool:
    """A transactional call that failed but left the transaction good: call it again."""
    err = error_of(exc)
    return err is not None and txn_action(err) == TxnAction.RETRY


class OutputProducer:
    """Produces the worker's records, counted per commit epoch; runs its transactions."""

    def __init__(self, settings: Settings, *, transactional_id: str | None, bus: BusState, retry: KafkaRetry,
                 metrics: WorkerMetrics, commits: CommitPoints) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.eos = transactional_id is not None
        self.bus = bus
        self.retry = retry
        self.metrics = metrics
        self.commits = commits
        self.in_txn = False
        self._txn_records: list[KeptRecord] = []
        self.producer: Producer | None = None
        #: the commit running in the background, until the worker collects it (`end_commit`)
        self._commit: Future[None] | None = None
        #: the thread that runs background commits (made on the first one)
        self._committer: ThreadPoolExecutor | None = None
        #: the committer thread's id while it runs a commit: its own retries may use the producer
        self._committer_ident: int | None = None

    def start(self) -> None:
        """Make the producer (and, exactly-once, initialise its transactions, fencing a predecessor)."""
        extra: dict[str, Any] = {"linger.ms": 5, "error_cb": self.bus.on_producer_error, **RECONNECT_CONFIG}
        if self.eos:
            extra.update({"transactional.id": self.transactional_id, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                          "message.timeout.ms": TRANSACTION_TIMEOUT_MS})
        else:
            extra["message.timeout.ms"] = MESSAGE_TIMEOUT_MS
        producer = make_producer(self.settings, **extra)
        if self.eos:
            self.retry(lambda: producer.init_transactions(TXN_CALL_S), "initialise transactions")
        self.producer = producer

    def _begin(self, producer: Producer) -> None:
        """Exactly-once: open a transaction if none is (the first record after a commit). Refused
        while a commit runs in the background (see begin_commit)."""
        self._check_free("produce")
        if self.eos and not self.in_txn:
            producer.begin_transaction()
            self.in_txn = True

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *, partition: int = -1,
                headers: list[tuple[str, bytes]] | None = None, callback: DeliveryCallback | None = None,
                epoch: int | None = None, timestamp_ms: int | None = None) -> None:
        """Produce one record, counted in the open epoch, or in `epoch` (an ended one) if given;
        `timestamp_ms` None: the producer's clock."""
        producer = self.producer
        assert producer is not None
        self._begin(producer)
        deliveries = self.commits.deliveries
        on_delivery = callback or deliveries.on_delivery
        timestamp = timestamp_ms or 0  # librdkafka: 0 is "now"
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, headers=headers, on_delivery=on_delivery,
                                 timestamp=timestamp)
                if epoch is None:
                    deliveries.count += 1
                else:
                    deliveries.add(epoch, 1)
                if self.eos:  # kept until the transaction commits: see commit_transaction
                    self._txn_records.append((topic, value, key, partition, headers, timestamp, on_delivery))
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def produce_forward(self, topic: str, records: Sequence[ConsumedRecord]) -> None:
        """Produce consumed records again to `topic`, each with its raw key, raw value, headers and
        timestamp, counted in the open epoch like `produce` (one delivery report each: a failed
        copy fails its commit like any record, so offsets never pass an undelivered copy), in the
        compiled loop of app.runtime.copies: routes copy a third of the events."""
        producer = self.producer
        assert producer is not None
        self._begin(producer)
        produce_copies(producer.produce, producer.poll, topic, records, self.commits.deliveries,
                       self._txn_records if self.eos else None)

    def _producer(self) -> Producer:
        assert self.producer is not None
        return self.producer

    def poll(self) -> None:
        """Serve delivery reports (not while a commit runs in the background: it serves them)."""
        if self.producer is not None and not self.committing:
            self.producer.poll(0)

    # -- commits in the background ----------------------------------------------------------------
    @property
    def committing(self) -> bool:
        """A commit was begun in the background and not collected yet (`end_commit`)."""
        return self._commit is not None

    @property
    def commit_ended(self) -> bool:
        """The background commit has ended (committed or failed): `end_commit` will not wait."""
        return self._commit is not None and self._commit.done()

    @property
    def commit_succeeded(self) -> bool:
        """The background commit has ended and committed (`end_commit` will return at once)."""
        return self.commit_ended and self._commit is not None and self._commit.exception() is None

    def begin_commit(self, epoch: int, offsets: list[TopicPartition], group_metadata: Callable[[], Any]) -> None:
        """`commit_transaction` on the committer thread; the caller goes on. Until `end_commit` the
        producer must not be used (produce, abort, flush and a second commit raise RuntimeError)."""
        self._check_free("begin a commit")
        if self._committer is None:
            self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-commit")

        def commit() -> None:
            self._committer_ident = threading.get_ident()
            try:
                self.commit_transaction(epoch, offsets, group_metadata)
            finally:
                self._committer_ident = None

        self._commit = self._committer.submit(commit)

    def end_commit(self) -> None:
        """Wait for the background commit to end and take its outcome: returns once committed,
        raises what made it fail (as `commit_transaction` raises it). No-op when none runs."""
        running, self._commit = self._commit, None
        if running is not None:
            running.result()

    def abandon_commit(self) -> None:
        """Wait for the background commit to end, its outcome not wanted (the worker drops its
        uncommitted work: a failure is logged, not raised)."""
        try:
            self.end_commit()
        except Exception as exc:
            log.warning("the transaction committing in the background failed (%s); its work is dropped", exc)

    def _check_free(self, what: str) -> None:
        """Refuse to use the producer while a background commit owns it (the committer thread's own
        retries excepted)."""
        if self._commit is not None and threading.get_ident() != self._committer_ident:
            raise RuntimeError(f"cannot {what}: a transaction commits in the background; "
                               "collect it first (OutputProducer.end_commit)")

    # -- transactions ---------------------------------------------------------------------------
    def commit_transaction(self, epoch: int, offsets: list[TopicPartition],
                           group_metadata: Callable[[], Any]) -> None:
        """Send the offsets and commit the open transaction (records of commit point `epoch`).

        Sending the offsets is retried while it fails transiently, then (or when Kafka aborted the
        transaction, or fenced the producer) the transaction is aborted and its records produced
        again in a new one. Once the commit has begun, the only valid next step is to commit again,
        so that is retried. Raised (the worker rewinds): a lost group membership, or failures past
        RECOMMIT_S."""
        self._check_free("commit")
        give_up_at = time.monotonic() + RECOMMIT_S
        while offsets:
            try:
                self.retry(lambda: self._producer().send_offsets_to_transaction(offsets, group_metadata(), TXN_CALL_S),
                           "send offsets to the transaction", retriable=_retry_in_place, deadline_s=SEND_OFFSETS_S)
                break
            except KafkaException as exc:
                err = error_of(exc)
                if err is None or is_membership_lost(err) or time.monotonic() > give_up_at \
                        or self.retry.stopping.is_set():
                    raise
                self._recommit(epoch, err)
        self.retry(lambda: self._producer().commit_transaction(TXN_CALL_S), "commit the transaction",
                   retriable=_retry_in_place, deadline_s=max(0.0, give_up_at - time.monotonic()))
        self.in_txn = False
        self._txn_records.clear()

    def _recommit(self, epoch: int, err: KafkaError) -> None:
        """Abort the failed transaction and produce its records again in a new one."""
        records = list(self._txn_records)
        log.warning("transaction failed (%s): aborting it and committing its %d record(s) again in a new one",
                    err.str(), len(records))
        self.metrics.dependency_retries.labels("kafka transaction").inc()
        if txn_action(err) == TxnAction.REBUILD:
            self.rebuild(err)
        else:
            self.abort()
            self.poll()  # the aborted records' delivery reports: counted, their errors expected
        self.commits.deliveries.errors.clear()
        for topic, value, key, partition, headers, timestamp, on_delivery in records:
            self.produce(topic, value, key, partition=partition, headers=headers, callback=on_delivery, epoch=epoch,
                         timestamp_ms=timestamp)

    def abort(self) -> None:
        """Abort the open transaction. A fenced producer, or one that cannot abort within ABORT_S
        (Kafka unreachable, or its coordinator request stuck), is made anew instead: the new
        producer's init_transactions aborts the transaction on the broker."""
        producer = self.producer
        assert producer is not None
        self._check_free("abort the transaction")
        self.in_txn = False
        self._txn_records.clear()
        try:
            self.retry(lambda: producer.abort_transaction(TXN_CALL_S), "abort the transaction", deadline_s=ABORT_S)
        except KafkaException as exc:
            err = error_of(exc)
            if err is None or not (txn_action(err) == TxnAction.REBUILD or is_transient(exc)):
                raise
            self.rebuild(err)

    def rebuild(self, err: KafkaError) -> None:
        """The producer is unusable (fenced, fatal): drop it and make a new one."""
        log.warning("the producer is unusable (%s): making a new one", err.str())
        self._check_free("make the producer anew")
        if self.producer is not None:
            self.producer.purge()
            self.producer.flush(5)  # serves the purged records' delivery reports (counted as ended)
        self.in_txn = False
        self._txn_records.clear()
        self.bus.producer_fatal = None
        self.start()

    # -- flushing -------------------------------------------------------------------------------
    def flush_all(self) -> None:
        """Wait until every produced record is acknowledged or failed (a failure ends a record after
        message.timeout.ms at most, so this ends even while Kafka is down)."""
        producer = self.producer
        assert producer is not None
        self._check_free("flush")
        waited_s = 0
        while True:
            left = producer.flush(1.0)
            if left == 0 or self.commits.deliveries.errors:
                return
            waited_s += 1
            if waited_s % 10 == 0:
                log.warning("waiting for Kafka to acknowledge %d record(s) (%d s so far)", left, waited_s)

    def close(self) -> None:
        """Serve the last delivery reports and let go of the producer (confluent-kafka producers have
        no close(); a delivery callback not yet served holds one from inside librdkafka)."""
        if self._commit is not None:
            self.abandon_commit()
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None
