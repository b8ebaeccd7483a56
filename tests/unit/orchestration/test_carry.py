"""What may stay in flight when an orchestrator turn ends, and the gate that holds a carried step's
table writes until the next turn of its partition."""

from __future__ import annotations

import asyncio

from app.orchestration.carry import Flight, TurnGate, turn_can_end


def test_turn_can_end__only_when_every_task_left_is_a_parked_idempotent_step() -> None:
    safe = Flight("r1", 0, "a0", may_carry=True)
    other = Flight("r1", 1, "a1", may_carry=True)
    risky = Flight("r1", 2, "a2", may_carry=False)
    poll = Flight("r1", 3, None, may_carry=False)
    assert turn_can_end([], set())
    assert turn_can_end([safe, other], {"a0", "a1"})
    assert not turn_can_end([safe, other], {"a0"}), "a1 is not parked yet: it may still write"
    assert not turn_can_end([safe, risky], {"a0", "a2"}), "a step that is not idempotent ends in its turn"
    assert not turn_can_end([safe, poll], {"a0"}), "a poll uses the turn's condition source"


def test_turn_gate__open_passes_at_once_closed_waits_for_the_next_opening() -> None:
    async def scenario() -> list[str]:
        gate, seen = TurnGate(), []

        async def step(name: str) -> None:
            await gate.wait()
            seen.append(name)

        gate.open()
        inside = asyncio.ensure_future(step("inside"))
        await asyncio.sleep(0)
        assert inside.done()
        gate.close()
        waiting = asyncio.ensure_future(step("after the turn"))
        for _ in range(3):
            await asyncio.sleep(0)
        assert seen == ["inside"] and not waiting.done()
        gate.open()
        await waiting
        return seen

    assert asyncio.run(scenario()) == ["inside", "after the turn"]


def test_turn_gate__a_waiter_woken_after_the_turn_closed_again_waits_on() -> None:
    async def scenario() -> bool:
        gate = TurnGate()
        waiting = asyncio.ensure_future(gate.wait())
        await asyncio.sleep(0)
        gate.open()
        gate.close()  # the turn ended before the woken task ran
        for _ in range(3):
            await asyncio.sleep(0)
        still_waiting = not waiting.done()
        gate.open()
        await waiting
        return still_waiting

    assert asyncio.run(scenario())


def test_turn_gate__an_open_gate_does_not_suspend() -> None:
    async def scenario() -> bool:
        gate = TurnGate()
        gate.open()
        coro = gate.wait()
        try:
            coro.send(None)
        except StopIteration:
            return True  # finished on its first step: nothing else could run in between
        finally:
            coro.close()
        return False

    assert asyncio.run(scenario())
