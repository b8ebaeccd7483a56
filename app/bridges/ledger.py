"""The delivery ledger as the HTTP bridge uses it: admit a delivery (claim its key, or learn it is a
duplicate), then record it accepted or release it. The decisions are `app.bridges.deliveries`'; this
module adds the waiting (for a claim to be read back, for another request's outcome) and the log
underneath: `MemoryDeliveryLedger` in one process (tests, `make_http_app` without a ledger), or
`app.bridges.kafka_ledger.KafkaDeliveryLedger` on the `deliveries` topic, shared by every replica
and kept across restarts.

A request with a delivery key:
1. reads the ledger as this replica has it: accepted within the window: a duplicate; another request
   holds a live claim: wait for its outcome (up to `wait_s`, then DeliveryBusy: a 503 to retry);
2. else writes a claim and waits until it has read the log up to that claim: every record of the
   key before it is folded, so whether the claim is the first live one is settled the same way on
   every replica (two replicas that race write two claims; the first in the log wins, the other
   waits for its outcome and answers "duplicate");
3. the winner produces the events, then writes `accepted` (the key is a duplicate from then on,
   locally at once, on the other replicas once they read it) or, if they did not all reach Kafka,
   `released` (the sender's retry produces them).
A claim whose request died (a crashed bridge) lapses after `lease_s`; a retry then produces.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.bridges.deliveries import (
    ACCEPTED,
    CLAIMED,
    RELEASED,
    Decision,
    DeliveryIndex,
    DeliveryKey,
    Entry,
    LedgerRecord,
    Verdict,
)
from app.model.ids import new_id

__all__ = [
    "Admission",
    "Claim",
    "DeliveryBusy",
    "DeliveryLedger",
    "LedgerUnavailable",
    "MemoryDeliveryLedger",
]

log = logging.getLogger(__name__)

#: How often the in-memory index forgets deliveries older than the window.
_PRUNE_EVERY_MS = 60_000


class LedgerUnavailable(Exception):
    """The ledger could not be written or read back in time (Kafka): not the sender's fault, retry later."""


class DeliveryBusy(Exception):
    """Another request is producing this delivery and did not finish within the wait: retry later."""


@dataclass(frozen=True)
class Claim:
    """A claim this request won: it produces the delivery's events."""

    key: DeliveryKey
    owner: str


@dataclass(frozen=True)
class Admission:
    """What to do with a delivery: produce it (`claim`), or answer without producing: a duplicate
    (`accepted` events the first time) or a conflict (the key was used with another body)."""

    claim: Claim | None = None
    duplicate: bool = False
    conflict: bool = False
    accepted: int = 0


def wall_clock_ms() -> int:
    """Wall-clock ms: ledger records carry the writer's time, which every replica compares alike."""
    return int(time.time() * 1000)


class DeliveryLedger:
    """The request-side protocol over a log (see the module docstring). Subclasses append records
    (`_append`) and feed every record they read back, in log order, to `_applied`.

    Called on the bridge's event loop; `_applied` may be called from any thread."""

    def __init__(self, *, window_s: float, lease_s: float, wait_s: float,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.window_s = window_s
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.clock_ms = clock_ms
        self._index = DeliveryIndex(window_ms=int(window_s * 1000), lease_ms=int(lease_s * 1000))
        self._lock = threading.Lock()
        #: next offset to read per partition (everything before it is folded)
        self._positions: dict[int, int] = {}
        self._offset_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._key_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pruned_ms = clock_ms()
        #: duplicates answered since the start
        self.duplicates = 0

    # -- the bridge's side ------------------------------------------------------------------------

    async def admit(self, key: DeliveryKey) -> Admission:
        """Claim `key`, or say it is a duplicate or a conflict; LedgerUnavailable or DeliveryBusy
        when that cannot be settled within `wait_s`."""
        deadline_ms = self.clock_ms() + int(self.wait_s * 1000)
        while True:
            now_ms = self.clock_ms()
            self._prune(now_ms)
            decision, changed = self._check(key, now_ms)
            if decision.verdict == Verdict.NEW:
                owner = new_id(now_ms)
                await self._claim(key, owner, deadline_ms)
                decision, changed = self._outcome(key, owner)
                if decision.verdict == Verdict.WON:
                    return Admission(claim=Claim(key, owner))
            if decision.verdict in (Verdict.DUPLICATE, Verdict.CONFLICT):
                return self._answer(decision)
            if decision.verdict == Verdict.BUSY:
                await self._wait_busy(key, decision, changed, deadline_ms)
            # NEW again (a claim lapsed or was released meanwhile): go round

    async def accepted(self, claim: Claim, count: int) -> None:
        """The claim's events are all in Kafka: record it (known here at once). A failure is logged,
        not raised: the events are delivered; the claim lapses after the lease instead."""
        await self._finish(LedgerRecord(claim.key.key, ACCEPTED, claim.owner, self.clock_ms(), count,
                                        claim.key.fingerprint))

    async def released(self, claim: Claim) -> None:
        """The claim's events did not (all) reach Kafka: let a retry produce them."""
        await self._finish(LedgerRecord(claim.key.key, RELEASED, claim.owner, self.clock_ms(),
                                        fingerprint=claim.key.fingerprint))

    def entry(self, key: str) -> Entry | None:
        """What this replica knows of `key` (tests, debugging)."""
        with self._lock:
            return self._index.get(key)

    def problems(self) -> list[str]:
        """Why the ledger cannot be used now ([] when it can), for /healthz."""
        return []

    def start(self, timeout_s: float = 30.0) -> None:
        """Be ready to decide: read what the log holds of the window (Kafka ledger)."""

    def close(self) -> None:
        """Release the log's resources."""

    # -- for subclasses ---------------------------------------------------------------------------

    async def _append(self, record: LedgerRecord) -> tuple[int, int]:
        """Write a record; its (partition, offset) once the log has it."""
        raise NotImplementedError

    def _applied(self, record: LedgerRecord | None, partition: int, offset: int) -> None:
        """Fold a record read back from the log (None: unreadable, skipped) at (partition, offset)."""
        ready: list[asyncio.Future[None]] = []
        with self._lock:
            if record is not None:
                self._index.apply(record)
                ready += self._key_waiters.pop(record.key, [])
            position = offset + 1
            if position > self._positions.get(partition, 0):
                self._positions[partition] = position
            if self._offset_waiters:
                waiting: list[tuple[int, int, asyncio.Future[None]]] = []
                for p, o, future in self._offset_waiters:
                    if p == partition and o < position:
                        ready.append(future)
                    else:
                        waiting.append((p, o, future))
                self._offset_waiters = waiting
        for future in ready:
            _resolve(future)

    def _at(self, partition: int, position: int) -> None:
        """Reading `partition` starts at `position` (nothing before it is of interest)."""
        with self._lock:
            self._positions[partition] = max(self._positions.get(partition, 0), position)

    def _position(self, partition: int) -> int:
        with self._lock:
            return self._positions.get(partition, 0)

    # -- internals --------------------------------------------------------------------------------

    def _check(self, key: DeliveryKey, now_ms: int) -> tuple[Decision, asyncio.Future[None] | None]:
        """The decision before claiming, and (BUSY) a future set when the key's next record is read:
        registered under the same lock as the check, so no record slips between them."""
        with self._lock:
            decision = self._index.check(key.key, key.fingerprint, now_ms)
            return decision, self._watch(key.key) if decision.verdict == Verdict.BUSY else None

    def _outcome(self, key: DeliveryKey, owner: str) -> tuple[Decision, asyncio.Future[None] | None]:
        with self._lock:
            decision = self._index.outcome(key.key, owner, key.fingerprint, self.clock_ms())
            return decision, self._watch(key.key) if decision.verdict == Verdict.BUSY else None

    def _watch(self, key: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._key_waiters.setdefault(key, []).append(future)
        return future

    async def _claim(self, key: DeliveryKey, owner: str, deadline_ms: int) -> None:
        record = LedgerRecord(key.key, CLAIMED, owner, self.clock_ms(), fingerprint=key.fingerprint)
        try:
            async with asyncio.timeout(max(0.0, (deadline_ms - self.clock_ms()) / 1000)):
                partition, offset = await self._append(record)
                await self._reached(partition, offset)
        except TimeoutError:
            raise LedgerUnavailable(f"the delivery ledger did not confirm the claim of {key.origin} within "
                                    f"{self.wait_s:g}s") from None

    async def _reached(self, partition: int, offset: int) -> None:
        """Wait until the record at (partition, offset) and everything before it is folded."""
        with self._lock:
            if self._positions.get(partition, 0) > offset:
                return
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._offset_waiters.append((partition, offset, future))
        await future

    async def _wait_busy(self, key: DeliveryKey, decision: Decision, changed: asyncio.Future[None] | None,
                         deadline_ms: int) -> None:
        """Wait for the other request's outcome: the key's next record, or its claim lapsing."""
        now_ms = self.clock_ms()
        if now_ms >= deadline_ms:
            self._unwatch(key.key, changed)
            raise DeliveryBusy(f"{key.origin} is being handled by another request that has not finished within "
                               f"{self.wait_s:g}s")
        wait_ms = min(deadline_ms, max(decision.busy_until_ms, now_ms + 1)) - now_ms
        if changed is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(changed), wait_ms / 1000)
        except TimeoutError:
            self._unwatch(key.key, changed)

    def _unwatch(self, key: str, future: asyncio.Future[None] | None) -> None:
        if future is None:
            return
        with self._lock:
            waiters = self._key_waiters.get(key, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._key_waiters.pop(key, None)

    async def _finish(self, record: LedgerRecord) -> None:
        if record.state == ACCEPTED:
            # Known here at once: a retry to this replica is a duplicate from now on. (Accepted wins
            # in any order, so folding it ahead of the log cannot make this replica decide otherwise;
            # a release is folded from the log only, in its place.)
            with self._lock:
                self._index.apply(record)
                ready = self._key_waiters.pop(record.key, [])
            for future in ready:
                _resolve(future)
        try:
            async with asyncio.timeout(self.wait_s):
                await self._append(record)
        except (TimeoutError, LedgerUnavailable) as exc:
            log.error("the delivery ledger did not take %s %s (%s): other replicas learn of it only when the "
                      "claim lapses (%gs)", record.state, record.key, exc or "timed out", self.lease_s)

    def _answer(self, decision: Decision) -> Admission:
        entry = decision.entry
        if decision.verdict == Verdict.CONFLICT:
            return Admission(conflict=True)
        self.duplicates += 1
        return Admission(duplicate=True, accepted=entry.accepted if entry is not None else 0)

    def _prune(self, now_ms: int) -> None:
        if now_ms - self._pruned_ms < _PRUNE_EVERY_MS:
            return
        self._pruned_ms = now_ms
        with self._lock:
            self._index.prune(now_ms)


def _resolve(future: asyncio.Future[None]) -> None:
    """Set a future made on some event loop, from any thread (a closed loop has nobody waiting)."""
    def set_done() -> None:
        if not future.done():
            future.set_result(None)

    try:
        future.get_loop().call_soon_threadsafe(set_done)
    except RuntimeError:
        pass


class MemoryDeliveryLedger(DeliveryLedger):
    """The ledger in this process only: duplicates are recognised while it runs, not across restarts
    or replicas (the HTTP bridge's default when no Kafka ledger is given; tests)."""

    def __init__(self, *, window_s: float = 86_400.0, lease_s: float = 60.0, wait_s: float = 15.0,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        super().__init__(window_s=window_s, lease_s=lease_s, wait_s=wait_s, clock_ms=clock_ms)
        self._next_offset = 0
        self._append_lock = threading.Lock()
        #: every record appended, in order (tests)
        self.records: list[LedgerRecord] = []

    async def _append(self, record: LedgerRecord) -> tuple[int, int]:
        with self._append_lock:
            offset = self._next_offset
            self._next_offset += 1
            self.records.append(record)
        self._applied(record, 0, offset)
        return 0, offset
