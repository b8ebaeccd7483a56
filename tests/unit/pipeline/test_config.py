"""PipelineConfig: durations as people write them in vigil.yaml, held as ms; mistakes named."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from app.pipeline.config import PipelineConfig
from app.pipeline.flap import FlapPolicy


def test_defaults__two_window_sizes_and_working_values() -> None:
    config = PipelineConfig()
    assert config.window_sizes_ms == (10_000, 60_000)
    assert (config.grace_ms, config.max_future_ms, config.window_retention_ms) == (5_000, 300_000, 3_600_000)
    assert config.flap_policy == FlapPolicy()


def test_from_yaml__durations_are_read_into_ms() -> None:
    text = """
    window_sizes: [1m, 10s, 5m]
    grace: 2s
    max_future: 90          # a bare number is seconds, as everywhere in vigil.yaml
    window_retention: 0     # keep no closed windows
    archive_retention: 2d
    state_retention: 36h
    flap: {window: 5m, enter_transitions: 3, exit_transitions: 1}
    """
    config = PipelineConfig.model_validate(yaml.safe_load(text))
    assert config.window_sizes_ms == (10_000, 60_000, 300_000)  # sorted
    assert (config.grace_ms, config.max_future_ms, config.window_retention_ms) == (2_000, 90_000, 0)
    assert config.flap_policy == FlapPolicy(window_ms=300_000, enter_transitions=3, exit_transitions=1)
    assert config.archive_retention_ms == 2 * 86_400_000
    assert config.state_retention_ms == 36 * 3_600_000
    assert config.describe() == ("windows [10s, 1m, 5m], grace 2s, max future 1m30s, window retention 0s, "
                                 "closes spread over 5s, archive retention 2d, state retention 1d12h, "
                                 "flapping at 3 transitions within 5m (until fewer than 1)")


@pytest.mark.parametrize("zero", [0, "0", "0s", "0ms", 0.0])
def test_grace__zero_means_no_lateness(zero: Any) -> None:
    assert PipelineConfig.model_validate({"grace": zero}).grace_ms == 0


def test_state_retention__a_week_by_default_and_zero_turns_expiry_off() -> None:
    assert PipelineConfig().state_retention_ms == 7 * 86_400_000
    config = PipelineConfig.model_validate({"state_retention": 0})
    assert config.state_retention_ms == 0
    assert "state retention off" in config.describe()


@pytest.mark.parametrize(
    ("data", "location", "message"),
    [
        ({"grace_ms": 5}, "grace_ms", "Extra inputs are not permitted"),
        ({"window_sizes": []}, "window_sizes", "at least one window size is needed"),
        ({"window_sizes": ["10s", "10000ms"]}, "window_sizes", "window sizes must be distinct; repeated: 10s"),
        ({"window_sizes": ["0s"]}, "window_sizes.0", "a duration must be positive"),
        ({"max_future": "soon"}, "max_future", "'soon' is not a duration"),
        ({"grace": True}, "grace", "True is not a duration"),
        ({"flap": {"exit_transitions": 9}}, "flap", "exit_transitions must be between 1 and enter_transitions (5)"),
        ({"flap": {"window": "-1m"}}, "flap.window", "is not a duration"),
    ],
)
def test_invalid__the_error_names_the_setting(data: dict[str, Any], location: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PipelineConfig.model_validate(data)
    errors = info.value.errors()
    assert [".".join(str(p) for p in e["loc"]) for e in errors] == [location]
    assert message in errors[0]["msg"]
