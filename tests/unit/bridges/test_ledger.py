"""The delivery ledger's request protocol (app.bridges.ledger): admit / accepted / released, waiting
for another request's outcome, lapsed claims, and two replicas racing over one shared log."""

from __future__ import annotations

import asyncio

import pytest

from app.bridges.deliveries import ACCEPTED, CLAIMED, RELEASED, DeliveryKey, LedgerRecord
from app.bridges.ledger import Admission, DeliveryBusy, DeliveryLedger, MemoryDeliveryLedger

KEY = DeliveryKey("github/push/x-github-delivery/d-1", "X-GitHub-Delivery 'd-1'")


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_first_request_claims__a_retry_after_acceptance_is_a_duplicate_with_the_count() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger()
        first = await ledger.admit(KEY)
        assert first.claim is not None
        await ledger.accepted(first.claim, 3)
        assert await ledger.admit(KEY) == Admission(duplicate=True, accepted=3)
        assert [r.state for r in ledger.records] == [CLAIMED, ACCEPTED]
        assert ledger.duplicates == 1
    asyncio.run(main())


def test_a_concurrent_request__waits_for_the_first_and_answers_duplicate() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger()
        first = await ledger.admit(KEY)
        assert first.claim is not None
        second = asyncio.create_task(ledger.admit(KEY))
        await asyncio.sleep(0)  # let it find the live claim and wait
        assert not second.done()
        await ledger.accepted(first.claim, 2)
        assert await asyncio.wait_for(second, 10) == Admission(duplicate=True, accepted=2)
    asyncio.run(main())


def test_a_released_claim__lets_the_waiting_request_produce() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger()
        first = await ledger.admit(KEY)
        assert first.claim is not None
        second = asyncio.create_task(ledger.admit(KEY))
        await asyncio.sleep(0)
        await ledger.released(first.claim)  # e.g. Kafka did not take the events: a 503
        admitted = await asyncio.wait_for(second, 10)
        assert admitted.claim is not None and admitted.claim.owner != first.claim.owner
        assert [r.state for r in ledger.records] == [CLAIMED, RELEASED, CLAIMED]
    asyncio.run(main())


def test_a_request_still_busy_after_the_wait__is_delivery_busy() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger(wait_s=0.05)
        assert (await ledger.admit(KEY)).claim is not None
        with pytest.raises(DeliveryBusy, match="being handled by another request"):
            await ledger.admit(KEY)
    asyncio.run(main())


def test_a_claim_whose_bridge_died__lapses_after_the_lease() -> None:
    async def main() -> None:
        clock = FakeClock()
        ledger = MemoryDeliveryLedger(lease_s=60, wait_s=0.05, clock_ms=clock)
        assert (await ledger.admit(KEY)).claim is not None  # and never finished
        clock.now_ms += 60_000
        assert (await ledger.admit(KEY)).claim is not None
    asyncio.run(main())


def test_a_key_reused_with_another_body__is_a_conflict() -> None:
    async def main() -> None:
        ledger = MemoryDeliveryLedger()
        first = await ledger.admit(DeliveryKey("events/k", "Idempotency-Key 'k'", "f1"))
        assert first.claim is not None
        await ledger.accepted(first.claim, 1)
        assert await ledger.admit(DeliveryKey("events/k", "Idempotency-Key 'k'", "f2")) == Admission(conflict=True)
    asyncio.run(main())


class SharedLog:
    """One partition several replicas write to; each replica reads it only when told to (`catch_up`)."""

    def __init__(self) -> None:
        self.records: list[LedgerRecord] = []
        self.grew = asyncio.Event()


class Replica(DeliveryLedger):
    """A bridge replica whose reader lags until the test lets it read."""

    def __init__(self, log: SharedLog) -> None:
        super().__init__(window_s=86_400, lease_s=60, wait_s=10)
        self.log = log
        self.read = 0

    async def _append(self, record: LedgerRecord) -> tuple[int, int]:
        self.log.records.append(record)
        self.log.grew.set()
        return 0, len(self.log.records) - 1

    def catch_up(self) -> None:
        while self.read < len(self.log.records):
            self._applied(self.log.records[self.read], 0, self.read)
            self.read += 1


def test_two_replicas_racing__one_produces_the_other_answers_duplicate() -> None:
    """Both replicas claim before either has read the other's claim: the first claim in the log wins
    on both, and the loser waits for the winner's outcome instead of producing."""
    async def main() -> None:
        log = SharedLog()
        a, b = Replica(log), Replica(log)
        tasks = {asyncio.create_task(a.admit(KEY)): a, asyncio.create_task(b.admit(KEY)): b}
        while len(log.records) < 2:
            log.grew.clear()
            await log.grew.wait()
        assert [r.state for r in log.records] == [CLAIMED, CLAIMED]
        a.catch_up()
        b.catch_up()
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=10)
        (won,) = done
        (lost,) = pending
        winner = won.result().claim
        assert winner is not None and winner.owner == log.records[0].owner
        await tasks[won].accepted(winner, 4)
        a.catch_up()
        b.catch_up()
        assert await asyncio.wait_for(lost, 10) == Admission(duplicate=True, accepted=4)
        assert [r.state for r in log.records] == [CLAIMED, CLAIMED, ACCEPTED]
    asyncio.run(main())
