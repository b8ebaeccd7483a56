"""The same runtime scenarios as the unit suite, on a real broker (KafkaHarness)."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.runtime.testing_kafka import KafkaHarness
from tests.unit.runtime.scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario__on_kafka(scenario, settings: Settings) -> None:
    made: list[KafkaHarness] = []

    def kafka_harness(agents, **kwargs) -> KafkaHarness:
        made.append(KafkaHarness(agents, settings=settings, **kwargs))
        return made[-1]

    try:
        scenario(kafka_harness)
    finally:
        for h in made:
            h.close()
