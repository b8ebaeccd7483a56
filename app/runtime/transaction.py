"""StoreTransaction: one agent call's state changes and outputs, kept or dropped together.

    with StoreTransaction(stores, outputs, on_rollback=rebuild_indexes):
        agent_fn(value, ctx)        # writes go to each store's overlay, sends to `outputs`

Leaving the block normally commits (each store keeps the call's writes as pending, for the next
worker commit); leaving it by an exception rolls back (each store drops the call's writes, the
outputs the call appended are removed, `on_rollback` runs) and re-raises. The status says where a
transaction is: STARTED, then COMMITTED or ROLLED_BACK; committing or rolling back a transaction
that is no longer STARTED is a bug in the caller and raises TransactionError.

Durability is not this object's job: a committed transaction's writes are pending in memory until
the worker commits them to the changelog and the backend (app.runtime.store). `checkpoint` is the
bridge for ctx.checkpoint(): commit what the call did so far, have the I/O layer make it durable,
and go on in the same transaction.

Modelled on Quix Streams' PartitionTransaction (quixstreams/state/base/transaction.py: a status
and a context manager instead of begin/rollback/end written out at every call site), smaller: no
prepared phase, because the changelog is written by the worker's commit, not per call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from app.runtime.store import PartitionStore

__all__ = ["StoreTransaction", "TransactionError", "TransactionStatus"]


class TransactionStatus(enum.Enum):
    """Where a StoreTransaction is in its life."""

    #: writes and outputs are being collected
    STARTED = "started"
    #: the writes were kept (pending for the next worker commit), the outputs stay
    COMMITTED = "committed"
    #: the writes and the outputs were dropped
    ROLLED_BACK = "rolled back"


class TransactionError(RuntimeError):
    """A transaction was used in a state that does not allow it (commit after rollback, ...)."""


class StoreTransaction:
    """The writes of one agent call to the stores of its partition, and the outputs it sends.

    Starts on creation (every store begins an overlay; the length of `outputs` is the mark past
    which the call's outputs are). `stores` must not be in another transaction."""

    __slots__ = ("_mark", "_on_rollback", "outputs", "status", "stores")

    def __init__(self, stores: Sequence[PartitionStore], outputs: list[Any], *,
                 on_rollback: Callable[[], None] | None = None) -> None:
        self.stores = stores
        #: the list the call's outputs are appended to (the engine's)
        self.outputs = outputs
        #: run after a rollback, e.g. to rebuild in-memory indexes from the stores
        self._on_rollback = on_rollback
        self._mark = 0
        self.status = TransactionStatus.STARTED
        self._begin()

    def _begin(self) -> None:
        for store in self.stores:
            store.begin()
        self._mark = len(self.outputs)
        self.status = TransactionStatus.STARTED

    def _require_started(self, action: str) -> None:
        if self.status is not TransactionStatus.STARTED:
            raise TransactionError(f"cannot {action} a store transaction that is already {self.status.value}; "
                                   f"start a new StoreTransaction for the next call")

    def commit(self) -> None:
        """Keep the writes (pending until the worker's next commit) and the outputs."""
        self._require_started("commit")
        for store in self.stores:
            store.end()
        self.status = TransactionStatus.COMMITTED

    def rollback(self) -> None:
        """Drop the writes and the outputs since the start (or the last checkpoint), then run
        `on_rollback`."""
        self._require_started("roll back")
        for store in self.stores:
            store.rollback()
        del self.outputs[self._mark:]
        self.status = TransactionStatus.ROLLED_BACK
        if self._on_rollback is not None:
            self._on_rollback()

    def checkpoint(self, make_durable: Callable[[], None]) -> None:
        """Commit the writes and outputs so far, call `make_durable` (the I/O layer's commit), then
        go on in this transaction: a later rollback drops only what follows. When `make_durable`
        raises, the transaction stays COMMITTED (what came before it is kept) and the error
        propagates."""
        self.commit()
        make_durable()
        self._begin()

    def __enter__(self) -> StoreTransaction:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Commit when the block ended normally, roll back when it raised (the exception
        propagates); nothing when the block already committed or rolled back."""
        if self.status is not TransactionStatus.STARTED:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __repr__(self) -> str:
        return f"StoreTransaction({len(self.stores)} stores, {self.status.value})"
