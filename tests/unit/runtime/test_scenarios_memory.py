"""The shared runtime scenarios on the in-memory harness."""

from __future__ import annotations

import pytest

from app.runtime.testing import AgentHarness
from tests.unit.runtime.scenarios import SCENARIOS


def memory_harness(agents, *, partitions: int = 1, output_topics=(), wall_clock_ms: int = 0) -> AgentHarness:
    return AgentHarness(agents, partitions=partitions, wall_clock_ms=wall_clock_ms)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario__in_memory(scenario) -> None:
    scenario(memory_harness)
