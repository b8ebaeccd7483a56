"""The event model as pydantic models: the boundary types for CLI, SDK, HTTP and tests.

Hot paths (the stream runtime) pass plain dicts shaped like the Avro records; `to_record` /
`from_record` convert between the two. Field meanings are documented in schemas/vigil/*.avsc.
"""

from __future__ import annotations

import json
import math
import time
from enum import Enum, IntEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.model.ids import new_id

__all__ = [
    "Action",
    "ActionResult",
    "Alert",
    "Event",
    "Kind",
    "Member",
    "MemberState",
    "ResultStatus",
    "Severity",
    "State",
    "Status",
    "WindowAggregate",
    "event_key",
    "now_ms",
]


def now_ms() -> int:
    """Wall-clock time in ms since the epoch."""
    return int(time.time() * 1000)


def event_key(subject: str, name: str) -> str:
    """Kafka key of an identity: 'subject/name' (identity-keyed agents need no repartitioning)."""
    return f"{subject}/{name}"


class Kind(str, Enum):
    METRIC = "METRIC"
    STATUS = "STATUS"
    ARCHIVE = "ARCHIVE"


class Severity(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class State(str, Enum):
    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"
    EXPIRED = "EXPIRED"


class ResultStatus(str, Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"


class MemberState(str, Enum):
    ALIVE = "ALIVE"
    FAILED = "FAILED"


class _Record(BaseModel):
    """Base: strict field names, enum values in records, dict conversion."""

    # validate_default: a default enum member becomes its value too (the compiled Avro writer takes
    # exact str/int values only; a member sent every record through fastavro).
    model_config = ConfigDict(extra="forbid", use_enum_values=True, populate_by_name=True, validate_default=True)

    #: Avro full name of the record this model mirrors.
    avro_name: ClassVar[str] = ""

    def to_record(self) -> dict[str, Any]:
        """The Avro-shaped dict for serialisation."""
        return self.model_dump()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Any:
        """Build from a decoded Avro dict (unknown fields of newer schema versions are ignored)."""
        fields = cls.model_fields
        return cls(**{k: v for k, v in record.items() if k in fields})


class Event(_Record):
    """Something that happened to an identity (subject + name)."""

    avro_name: ClassVar[str] = "vigil.Event"
    id: str = Field(default_factory=new_id)
    time: int = Field(default_factory=now_ms, description="ms since epoch")
    subject: str
    name: str
    kind: Kind = Kind.STATUS
    severity: int = Field(0, ge=0, le=3)
    origin: str = ""
    text: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    ttl: float | None = Field(None, gt=0)
    extended: dict[str, Any] | None = None
    trace_id: str | None = None

    @field_validator("subject", "name")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"metric {k!r} is {x}: metrics must be finite numbers")
        return v

    @field_validator("extended", mode="before")
    @classmethod
    def _parse_extended(cls, v: Any) -> Any:
        if isinstance(v, str):
            return json.loads(v)
        return v

    @property
    def key(self) -> str:
        return event_key(self.subject, self.name)

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        if record["extended"] is not None:
            record["extended"] = json.dumps(record["extended"], separators=(",", ":"), sort_keys=True)
        return record


class Alert(_Record):
    avro_name: ClassVar[str] = "vigil.Alert"
    id: str = Field(default_factory=new_id)
    time: int = Field(default_factory=now_ms)
    subject: str
    name: str
    from_state: str
    to_state: str
    severity: int = 0
    cause_event_id: str | None = None
    text: str = ""
    flapping: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    trace_id: str | None = None


class Status(_Record):
    avro_name: ClassVar[str] = "vigil.Status"
    subject: str
    name: str
    state: State = State.UNKNOWN
    since: int
    last_seen: int
    last_event_id: str = ""
    text: str = ""
    event_count: int = 0
    transition_count: int = 0
    flapping: bool = False
    ttl: float | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class WindowAggregate(_Record):
    avro_name: ClassVar[str] = "vigil.WindowAggregate"
    subject: str
    name: str
    metric: str
    window_start: int
    window_end: int
    size_ms: int
    count: int
    sum: float
    min: float
    max: float
    mean: float
    last: float
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    sketch: bytes | None = None


class Action(_Record):
    avro_name: ClassVar[str] = "vigil.Action"
    id: str
    time: int = Field(default_factory=now_ms)
    rule: str
    type: str
    target: str
    params: str = "{}"
    group_key: str = ""
    event_id: str | None = None
    trace_id: str | None = None
    deadline: int | None = None
    signature: str | None = None
    #: rules whose actions produced the cause event, oldest first (app.model.chain); [] for most
    chain: list[str] = Field(default_factory=list)
    #: "RUN/STEP" for a step of an orchestration run (app.orchestration), which its orchestrator runs
    run: str = ""


class ActionResult(_Record):
    avro_name: ClassVar[str] = "vigil.ActionResult"
    id: str = Field(default_factory=new_id)
    action_id: str
    time: int = Field(default_factory=now_ms)
    status: ResultStatus
    rule: str = ""
    type: str = ""
    target: str = ""
    attempts: int = 1
    started: int | None = None
    finished: int | None = None
    output: str = ""
    error: str = ""
    trace_id: str | None = None


class Member(_Record):
    avro_name: ClassVar[str] = "vigil.Member"
    host: str
    state: MemberState = MemberState.ALIVE
    tags: dict[str, str] = Field(default_factory=dict)
    first_seen: int
    last_seen: int
    ttl: float | None = None
