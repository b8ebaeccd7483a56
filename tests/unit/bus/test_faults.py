"""What a Kafka failure means for the caller (app.bus.faults), decided from the error alone."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from app.bus.faults import TxnAction, error_of, is_fatal, is_membership_lost, is_transient, txn_action


def exc(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "test", **flags))


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR,
                                  KafkaError.REBALANCE_IN_PROGRESS])
def test_is_transient__what_a_broker_restart_causes(code: int) -> None:
    assert is_transient(exc(code))


def test_is_transient__flags_and_other_errors() -> None:
    assert is_transient(exc(KafkaError.UNKNOWN, retriable=True))
    assert not is_transient(exc(KafkaError._TRANSPORT, fatal=True))  # fatal wins
    assert not is_transient(exc(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not is_transient(ValueError("not Kafka"))
    assert error_of(ValueError("x")) is None


def test_is_fatal__the_flag_or_a_code_that_leaves_the_client_dead() -> None:
    # a consumer's fatal error reaches the application with code _FATAL and the flag unset
    assert is_fatal(KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced"))
    assert is_fatal(KafkaError(KafkaError.FENCED_INSTANCE_ID))
    assert is_fatal(KafkaError(KafkaError.UNKNOWN, "?", fatal=True))
    assert not is_fatal(KafkaError(KafkaError._STATE))
    assert not is_transient(exc(KafkaError._FATAL, retriable=True))


def test_membership_lost__unknown_member_and_generation() -> None:
    assert is_membership_lost(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))
    assert is_membership_lost(KafkaError(KafkaError.ILLEGAL_GENERATION))
    assert not is_membership_lost(KafkaError(KafkaError._TRANSPORT))


@pytest.mark.parametrize(("err", "action"), [
    (KafkaError(KafkaError._TIMED_OUT, "t", retriable=True), TxnAction.RETRY),
    (KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE), TxnAction.RETRY),
    (KafkaError(KafkaError._STATE, "s", txn_requires_abort=True), TxnAction.ABORT),
    (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "e", txn_requires_abort=True), TxnAction.ABORT),
    (KafkaError(KafkaError._FENCED, "f", fatal=True), TxnAction.REBUILD),
    (KafkaError(KafkaError.PRODUCER_FENCED), TxnAction.REBUILD),
    (KafkaError(KafkaError.UNKNOWN, "?"), TxnAction.ABORT),  # unknown state: never trusted to commit
])
def test_txn_action__confluent_kafkas_documented_order(err: KafkaError, action: TxnAction) -> None:
    assert txn_action(err) == action
