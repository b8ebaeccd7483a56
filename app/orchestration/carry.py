"""Steps that outlive the orchestrator's turn: what may stay in flight when a turn ends, and the
gate that keeps their table writes inside a later turn of the same partition.

A turn is one agent call: at its end the worker takes other records, and the tables are bound to
another agent's partition. Draining every step in flight at the end of each slice (5 s) left up to a
step's length (1 s on benchmarks/orchestration.py) of free slots unused and was the p99 of a roll's
scheduling overhead. So a step whose plugin is idempotent may stay in flight: its plugin runs on
(its I/O progresses whenever the engine's event loop runs), and the rest of the step -- the ledger's
"finished", the result, the lane's new state -- waits at the `TurnGate` for the next turn of its
partition, where it is written as if the turn had never ended.

Only idempotent steps, and only while they touch no table (their plugin runs, or they wait to retry):
a worker stopping between turns leaves them unfinished, and after the restart they run again with
the same action id, which their receiver deduplicates. A step that is not idempotent is drained
before the turn ends, as before (stopping between turns must not make it "interrupted").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Flight", "TurnGate", "turn_can_end"]


@dataclass(frozen=True, slots=True)
class Flight:
    """One task of a turn: the step it runs, and whether it may stay in flight after the turn."""

    run_id: str
    lane: int
    #: the step's action id (None: a wait's poll, which uses the turn's condition source)
    action_id: str | None
    #: an idempotent step's action: it may outlive the turn while its plugin runs
    may_carry: bool


def turn_can_end(flights: Iterable[Flight], parked: set[str]) -> bool:
    """Whether a turn that stopped starting work can end now: every task left is a step that may
    outlive it and is parked (its plugin runs, or it waits to retry: no table is touched)."""
    return all(f.may_carry and f.action_id is not None and f.action_id in parked for f in flights)


class TurnGate:
    """`await gate.wait()`: returns at once inside a turn (without suspending, so nothing else runs
    in between), else when the next turn opens it. A task woken by `open()` checks again when it
    runs: the turn may have ended in the meantime."""

    def __init__(self) -> None:
        self.is_open = False
        self._waiters: list[asyncio.Future[None]] = []

    def open(self) -> None:
        """The partition's turn begins: tasks waiting here go on."""
        self.is_open = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """The turn ends: tasks that reach the gate wait for the next one."""
        self.is_open = False

    async def wait(self) -> None:
        while not self.is_open:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
