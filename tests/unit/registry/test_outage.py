"""The outage bookkeeping the store uses to answer from memory while Kafka is unreachable."""

from __future__ import annotations

from app.registry.outage import Outage


def test_outage__starts_once_checks_one_caller_per_interval_and_ends() -> None:
    outage = Outage(recheck_s=1.0)
    assert outage.may_check(0.0) and outage.may_check(0.0)  # no outage: everyone asks Kafka
    assert outage.down("connection refused", 10.0) is True
    assert outage.down("timed out", 10.5) is False and outage.reason == "timed out"
    assert not outage.may_check(11.0)  # within recheck_s of the last failure: answer from memory
    assert outage.may_check(11.6)
    assert not outage.may_check(11.7)  # somebody is already checking
    outage.checked()
    assert outage.may_check(11.8)
    outage.checked()
    assert outage.up(14.0) == 4.0 and not outage.is_down() and outage.reason is None
    assert outage.up(15.0) is None
