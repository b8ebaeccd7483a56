"""What a Kafka failure means for the caller: wait and retry, abort the transaction and rewind, or
rebuild the client. Decided from the error alone (no client here), so it is unit-tested with
KafkaError objects made by hand.

librdkafka marks some errors `retriable()`, `txn_requires_abort()` or `fatal()`, but not every
error a broker restart causes: a commit to a coordinator that is loading, a transport failure, or a
group membership the restarted broker no longer knows come back as plain codes. Those are listed
here; everything else that is neither retriable nor fatal is a real problem of the request.
"""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError, KafkaException

__all__ = ["FATAL_CODES", "MEMBERSHIP_LOST_CODES", "TRANSIENT_CODES", "TxnAction", "error_of", "is_fatal",
           "is_membership_lost", "is_transient", "txn_action"]

#: Codes a broker restart or leader move produces that clear up by themselves.
TRANSIENT_CODES = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE, KafkaError._WAIT_COORD, KafkaError._RESOLVE, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.CONCURRENT_TRANSACTIONS, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNSTABLE_OFFSET_COMMIT, KafkaError.FETCH_SESSION_ID_NOT_FOUND, KafkaError.OFFSET_NOT_AVAILABLE,
})
#: Codes that say the client that reported them is unusable for good, whatever its `fatal()` flag: a
#: consumer hands its fatal error to the application as a message or call result with code _FATAL
#: and the flag unset (confluent-kafka 2.12, measured), and a fenced static member
#: (FENCED_INSTANCE_ID) is made fatal by librdkafka right after.
FATAL_CODES = frozenset({KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID})
#: Codes that say the consumer's group membership (and so its partitions) is gone: it rejoins.
MEMBERSHIP_LOST_CODES = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.FENCED_INSTANCE_ID,
    KafkaError._MAX_POLL_EXCEEDED,
})


class TxnAction(str, Enum):
    """What to do after a transactional call (send offsets, commit, abort) failed."""

    RETRY = "retry"  # call it again: the transaction is still good
    ABORT = "abort"  # abort the transaction and rewind to the last committed point
    REBUILD = "rebuild"  # the producer is unusable (fenced, fatal): make a new one, then rewind


def error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries (None for other exceptions)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def is_fatal(err: KafkaError) -> bool:
    """The client that reported `err` is unusable for good: it must be made anew (no retry helps)."""
    return err.fatal() or err.code() in FATAL_CODES


def is_transient(exc: BaseException) -> bool:
    """A failure that a retry after a pause may not repeat (broker down, coordinator moving)."""
    err = error_of(exc)
    if err is None:
        return False
    return not is_fatal(err) and (err.retriable() or err.code() in TRANSIENT_CODES)


def is_membership_lost(err: KafkaError) -> bool:
    """The group no longer knows this member: its partitions may already belong to another."""
    return err.code() in MEMBERSHIP_LOST_CODES


def txn_action(err: KafkaError) -> TxnAction:
    """confluent-kafka's documented handling of transactional errors, in order: fatal errors need a
    new producer, abortable ones an abort, retriable ones a retry; anything else cannot be trusted
    to have left the transaction intact, so it is aborted."""
    if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError._FATAL):
        return TxnAction.REBUILD
    if err.txn_requires_abort():
        return TxnAction.ABORT
    if err.retriable() or err.code() in TRANSIENT_CODES:
        return TxnAction.RETRY
    return TxnAction.ABORT
