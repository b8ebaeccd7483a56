"""Settings of the built-in pipeline (status, windows, absence), as written in vigil.yaml:

    pipeline:
      window_sizes: [10s, 1m]    # tumbling windows per metric of every identity
      grace: 5s                  # how late (event time) an event may arrive and still count
      max_future: 5m             # events further ahead of the wall clock are rejected
      window_retention: 1h       # closed windows kept for queries
      close_spread: 5s           # closing timers spread over this much event time (at most half a window)
      archive_retention: 7d      # event-time span the id/find index keeps (match `events` retention)
      state_retention: 7d        # an identity without events this long is forgotten (0: never)
      flap:
        window: 10m
        enter_transitions: 5     # flapping from 5 transitions within the window...
        exit_transitions: 2      # ...until fewer than 2 remain in it

Durations are written the way app.durations reads them ("10s", "1h30m"; a bare number is seconds).
The model's attributes carry their unit: `grace_ms`, `window_sizes_ms`, ...
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from app.config import Settings, section_model
from app.durations import format_duration_ms, parse_duration_ms
from app.pipeline.flap import FlapPolicy
from app.runtime.expiry import DEFAULT_STATE_RETENTION_MS

__all__ = [
    "DEFAULT_ARCHIVE_RETENTION_MS",
    "DEFAULT_CLOSE_SPREAD_MS",
    "DEFAULT_GRACE_MS",
    "DEFAULT_MAX_FUTURE_MS",
    "DEFAULT_WINDOW_RETENTION_MS",
    "DEFAULT_WINDOW_SIZES_MS",
    "FlapConfig",
    "PipelineConfig",
]

DEFAULT_WINDOW_SIZES_MS: Final = (10_000, 60_000)
DEFAULT_GRACE_MS: Final = 5_000
DEFAULT_MAX_FUTURE_MS: Final = 300_000
DEFAULT_WINDOW_RETENTION_MS: Final = 3_600_000
DEFAULT_ARCHIVE_RETENTION_MS: Final = 7 * 86_400_000
#: Every identity's windows end at the same instant; closing them all at once is a burst of work
#: (one record per window and metric) that delays the events behind it by seconds at tens of
#: thousands of identities. Each identity's closing timer fires a fixed delay (0 <= delay < spread,
#: from a hash of the identity) later, so the closes are spread evenly over this much event time.
DEFAULT_CLOSE_SPREAD_MS: Final = 5_000
_DEFAULT_FLAP: Final = FlapPolicy()
_ZERO: Final = re.compile(r"0+(\.0+)?(ms|s|m|h|d|w)?")


def _duration_ms(value: Any) -> Any:
    return parse_duration_ms(value) if isinstance(value, str | int | float) else value


def _duration_or_zero_ms(value: Any) -> Any:
    if isinstance(value, bool):
        return _duration_ms(value)  # parse_duration_ms explains why a boolean is not a duration
    if (isinstance(value, int | float) and value == 0) or (isinstance(value, str) and _ZERO.fullmatch(value.strip())):
        return 0
    return _duration_ms(value)


#: A positive duration: "10s", "1m30s", or a number of seconds; held as ms.
DurationMs = Annotated[int, BeforeValidator(_duration_ms)]
#: Like DurationMs, but 0 ("no grace") is allowed.
DurationOrZeroMs = Annotated[int, BeforeValidator(_duration_or_zero_ms)]

# Alias-only input: a field named `grace_ms` that accepted "5s" -- or a bare 5000 meaning 5000 seconds,
# as durations read -- would mislead; in the file it is `grace`, in code `grace_ms`.
_MODEL_CONFIG: Final = ConfigDict(extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False)


class FlapConfig(BaseModel):
    """`pipeline.flap`: when an identity counts as flapping (see app.pipeline.flap)."""

    model_config = _MODEL_CONFIG

    window_ms: DurationMs = Field(_DEFAULT_FLAP.window_ms, alias="window")
    enter_transitions: int = Field(_DEFAULT_FLAP.enter_transitions)
    exit_transitions: int = Field(_DEFAULT_FLAP.exit_transitions)

    @model_validator(mode="after")
    def _valid_policy(self) -> FlapConfig:
        self.to_policy()  # FlapPolicy owns the rules; its ValueError names the problem
        return self

    def to_policy(self) -> FlapPolicy:
        """The FlapPolicy that fold_status and expire take."""
        return FlapPolicy(window_ms=self.window_ms, enter_transitions=self.enter_transitions,
                          exit_transitions=self.exit_transitions)


class PipelineConfig(BaseModel):
    """`pipeline` in vigil.yaml; every field has a working default."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        """The `pipeline` section of the settings (ConfigError naming the field when it is wrong)."""
        return section_model(cls, settings, "pipeline")

    model_config = _MODEL_CONFIG

    window_sizes_ms: tuple[DurationMs, ...] = Field(DEFAULT_WINDOW_SIZES_MS, alias="window_sizes")
    grace_ms: DurationOrZeroMs = Field(DEFAULT_GRACE_MS, alias="grace", ge=0)
    max_future_ms: DurationMs = Field(DEFAULT_MAX_FUTURE_MS, alias="max_future")
    window_retention_ms: DurationOrZeroMs = Field(DEFAULT_WINDOW_RETENTION_MS, alias="window_retention", ge=0)
    archive_retention_ms: DurationMs = Field(DEFAULT_ARCHIVE_RETENTION_MS, alias="archive_retention")
    #: see DEFAULT_CLOSE_SPREAD_MS; capped at half the smallest window (`close_spread_effective_ms`); 0: none
    close_spread_ms: DurationOrZeroMs = Field(DEFAULT_CLOSE_SPREAD_MS, alias="close_spread", ge=0)
    #: event time without events after which an identity's state is forgotten (app.runtime.expiry); 0: never
    state_retention_ms: DurationOrZeroMs = Field(DEFAULT_STATE_RETENTION_MS, alias="state_retention", ge=0)
    flap: FlapConfig = Field(default_factory=FlapConfig)

    @field_validator("window_sizes_ms")
    @classmethod
    def _distinct_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not sizes:
            raise ValueError("at least one window size is needed, e.g. [10s, 1m]")
        if len(set(sizes)) != len(sizes):
            repeated = sorted({format_duration_ms(s) for s in sizes if sizes.count(s) > 1})
            raise ValueError(f"window sizes must be distinct; repeated: {', '.join(repeated)}")
        return tuple(sorted(sizes))

    @property
    def close_spread_effective_ms(self) -> int:
        """The spread of window-closing timers: `close_spread`, at most half the smallest window (a
        closed window is published at most half a window after its end + grace)."""
        return min(self.close_spread_ms, self.window_sizes_ms[0] // 2)

    @property
    def flap_policy(self) -> FlapPolicy:
        """The flap policy for fold_status/expire."""
        return self.flap.to_policy()

    def describe(self) -> str:
        """One line for startup logs."""
        sizes = ", ".join(format_duration_ms(s) for s in self.window_sizes_ms)
        return (f"windows [{sizes}], grace {format_duration_ms(self.grace_ms)}, "
                f"max future {format_duration_ms(self.max_future_ms)}, "
                f"window retention {format_duration_ms(self.window_retention_ms)}, "
                f"closes spread over {format_duration_ms(self.close_spread_effective_ms)}, "
                f"archive retention {format_duration_ms(self.archive_retention_ms)}, "
                f"state retention {format_duration_ms(self.state_retention_ms) if self.state_retention_ms else 'off'}, "
                f"flapping at {self.flap_policy.describe()}")
