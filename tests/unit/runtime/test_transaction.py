"""StoreTransaction on its own: each status transition, the outputs mark, the rollback hook,
checkpoints mid-call, and misuse (commit after rollback, ...) raising a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from app.runtime.backends import MemoryBackend
from app.runtime.codecs import JsonCodec
from app.runtime.store import PartitionStore
from app.runtime.transaction import StoreTransaction, TransactionError, TransactionStatus

STARTED, COMMITTED, ROLLED_BACK = TransactionStatus.STARTED, TransactionStatus.COMMITTED, TransactionStatus.ROLLED_BACK


def _stores(count: int = 2) -> list[PartitionStore]:
    stores = [PartitionStore(MemoryBackend(), JsonCodec()) for _ in range(count)]
    for store in stores:
        store["kept"] = "before"
    return stores


def _outputs(*sent: str) -> list[Any]:
    return list(sent)


def test_commit__keeps_writes_and_outputs() -> None:
    stores, outputs = _stores(), _outputs("earlier")
    txn = StoreTransaction(stores, outputs)
    assert txn.status is STARTED
    stores[0]["a"] = 1
    stores[1]["b"] = 2
    outputs.append("sent")
    txn.commit()
    assert txn.status is COMMITTED
    assert (stores[0].get("a"), stores[1].get("b")) == (1, 2)
    assert stores[0].take_pending_values() == {"kept": "before", "a": 1}  # pending for the worker's commit
    assert outputs == ["earlier", "sent"]


def test_rollback__drops_writes_and_only_the_outputs_since_the_start_then_runs_the_hook() -> None:
    stores, outputs = _stores(), _outputs("earlier")
    seen: list[Any] = []
    txn = StoreTransaction(stores, outputs, on_rollback=lambda: seen.append((stores[0].get("a"), list(outputs))))
    stores[0]["a"] = 1
    del stores[1]["kept"]
    outputs += ["sent", "sent too"]
    txn.rollback()
    assert txn.status is ROLLED_BACK
    assert seen == [(None, ["earlier"])]  # the hook runs after the writes and outputs are gone
    assert stores[0].get("a") is None and stores[1].get("kept") == "before"
    assert outputs == ["earlier"]


def test_context_manager__commits_when_the_block_ends_normally() -> None:
    stores, outputs = _stores(1), _outputs()
    with StoreTransaction(stores, outputs) as txn:
        stores[0]["a"] = 1
        outputs.append("sent")
    assert txn.status is COMMITTED and stores[0].get("a") == 1 and outputs == ["sent"]


@pytest.mark.parametrize("error", [ValueError("bad record"), KeyboardInterrupt()])
def test_context_manager__rolls_back_and_reraises_on_any_exception(error: BaseException) -> None:
    stores, outputs = _stores(1), _outputs()
    rebuilt: list[bool] = []
    with pytest.raises(type(error)), StoreTransaction(stores, outputs, on_rollback=lambda: rebuilt.append(True)) as txn:
        stores[0]["a"] = 1
        outputs.append("sent")
        raise error
    assert txn.status is ROLLED_BACK and rebuilt == [True]
    assert stores[0].get("a") is None and outputs == []


def test_context_manager__leaves_an_explicitly_ended_transaction_alone() -> None:
    stores, outputs = _stores(1), _outputs()
    with StoreTransaction(stores, outputs) as txn:
        stores[0]["a"] = 1
        txn.rollback()
    assert txn.status is ROLLED_BACK and stores[0].get("a") is None
    with pytest.raises(RuntimeError, match="after commit"), StoreTransaction(stores, outputs) as txn:
        stores[0]["b"] = 2
        txn.commit()
        raise RuntimeError("after commit")
    assert txn.status is COMMITTED and stores[0].get("b") == 2  # committed writes are not undone


def test_checkpoint__commits_so_far_then_goes_on_and_a_later_rollback_drops_only_what_follows() -> None:
    stores, outputs = _stores(1), _outputs("earlier")
    durable: list[tuple[dict[str, Any], list[str]]] = []

    def make_durable() -> None:  # what the worker's commit sees: the writes pending, the outputs so far
        durable.append((stores[0].take_pending_values(), list(outputs)))
        outputs.clear()  # the worker hands the outputs to the producer

    with pytest.raises(ValueError), StoreTransaction(stores, outputs) as txn:
        stores[0]["a"] = "started"
        outputs.append("before checkpoint")
        txn.checkpoint(make_durable)
        assert txn.status is STARTED
        stores[0]["a"] = "finished"
        outputs.append("after checkpoint")
        raise ValueError("agent failed after its checkpoint")
    assert durable == [({"kept": "before", "a": "started"}, ["earlier", "before checkpoint"])]
    assert txn.status is ROLLED_BACK
    assert stores[0].get("a") == "started" and outputs == []


def test_checkpoint__failing_to_make_durable_leaves_the_transaction_committed() -> None:
    stores, outputs = _stores(1), _outputs()

    def broken() -> None:
        raise OSError("broker gone")

    with pytest.raises(OSError, match="broker gone"), StoreTransaction(stores, outputs) as txn:
        stores[0]["a"] = 1
        outputs.append("sent")
        txn.checkpoint(broken)
    assert txn.status is COMMITTED
    assert stores[0].get("a") == 1 and outputs == ["sent"]  # kept for the worker's shutdown commit


@pytest.mark.parametrize("first, second, message", [
    ("commit", "commit", "cannot commit a store transaction that is already committed"),
    ("commit", "rollback", "cannot roll back a store transaction that is already committed"),
    ("rollback", "commit", "cannot commit a store transaction that is already rolled back"),
    ("rollback", "rollback", "cannot roll back a store transaction that is already rolled back"),
    ("rollback", "checkpoint", "cannot commit a store transaction that is already rolled back"),
])
def test_misuse__ending_a_transaction_that_is_no_longer_started_raises(first: str, second: str, message: str) -> None:
    stores = _stores(1)
    txn = StoreTransaction(stores, [])
    getattr(txn, first)()
    with pytest.raises(TransactionError, match=message):
        if second == "checkpoint":
            txn.checkpoint(lambda: None)
        else:
            getattr(txn, second)()
    assert txn.status is not STARTED


def test_misuse__the_error_says_what_to_do() -> None:
    txn = StoreTransaction(_stores(1), [])
    txn.rollback()
    with pytest.raises(TransactionError) as caught:
        txn.commit()
    assert str(caught.value) == ("cannot commit a store transaction that is already rolled back; "
                                 "start a new StoreTransaction for the next call")
    assert repr(txn) == "StoreTransaction(1 stores, rolled back)"


def test_a_new_transaction_after_one_ended_starts_clean() -> None:
    stores, outputs = _stores(1), _outputs()
    first = StoreTransaction(stores, outputs)
    stores[0]["a"] = 1
    first.rollback()
    second = StoreTransaction(stores, outputs)
    stores[0]["b"] = 2
    second.commit()
    assert (stores[0].get("a"), stores[0].get("b")) == (None, 2)
