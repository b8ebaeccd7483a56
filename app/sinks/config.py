"""Settings of the metric sinks, as written in vigil.yaml (`sinks:`), each sink off by default:

    sinks:
      prometheus:                 # the worker's /metrics shows the latest closed windows
        enabled: true
        max_series: 50000         # past it new series are cut (counted)
        stale_windows: 3          # a series goes once its window is this many windows behind
      remote_write:               # Prometheus remote-write 1.0
        enabled: true
        url: http://127.0.0.1:9090/api/v1/write
        username: vigil           # password: VIGIL_SINK_REMOTE_WRITE_PASSWORD(_FILE)
      graphite:                   # plaintext protocol over TCP
        enabled: true
        address: 127.0.0.1:2003
        path_template: "vigil.{subject}.{name}.{metric}.{window}.{aggregate}"
      otlp:                       # OpenTelemetry metrics, OTLP/HTTP protobuf
        enabled: true
        endpoint: http://127.0.0.1:4318   # POSTs to <endpoint>/v1/metrics
      senders: process            # push sinks encode and send in a child process (or: thread)

Every push sink (remote_write, graphite, otlp) also takes the delivery keys of `PushConfig`
(batching, retry, on-disk buffer). Credentials never sit here: they come from the environment or
files (app.sinks.credentials).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.config import Settings, section_model
from app.durations import PositiveDurationMs
from app.sinks.graphite import PathTemplate

__all__ = ["GraphiteConfig", "OtlpConfig", "PrometheusConfig", "PushConfig", "RemoteWriteConfig", "SinksConfig",
           "sinks_on"]

_URL = re.compile(r"^https?://[^/]+")
_MIB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = False


class PrometheusConfig(_Section):
    """The latest closed windows as series on the worker's /metrics."""

    max_series: int = Field(50_000, ge=1, description="series shown at most; new ones past it are cut and counted")
    stale_windows: int = Field(3, ge=1, description="a series goes once the newest window of its size on this "
                               "worker is this many windows later than its own")


class PushConfig(_Section):
    """Delivery of one push sink: batches, retries, the on-disk buffer while the destination is down."""

    batch_windows: int = Field(500, ge=1, description="closed windows per request at most")
    batch_delay_ms: PositiveDurationMs = Field(1_000, alias="batch_delay",
                                               description="a batch leaves at most this long after its first window")
    queue_windows: int = Field(50_000, ge=1, description="windows waiting for the sender in memory; past it the "
                               "pipeline drops new ones (counted: queue_full) rather than wait")
    buffer_max_bytes: int = Field(64 * _MIB, ge=0, description="on-disk buffer of batches the destination could "
                                  "not take yet; the oldest are dropped past it (counted: buffer_full); 0: none")
    buffer_dir: Path | None = Field(None, description="where the buffer lives (default: <state_dir>/sinks/<sink>)")
    timeout_ms: PositiveDurationMs = Field(10_000, alias="timeout", description="one request's time limit")
    retry_initial_ms: PositiveDurationMs = Field(500, alias="retry_initial",
                                                 description="first retry delay (full-jitter exponential backoff)")
    retry_max_ms: PositiveDurationMs = Field(30_000, alias="retry_max", description="longest retry delay")
    max_age_ms: PositiveDurationMs = Field(3_600_000, alias="max_age", description="windows that ended longer ago "
                                           "than this (a backlog read after a long stop) are not sent (too_old)")


class RemoteWriteConfig(PushConfig):
    url: str = Field("", description="the receiver's remote-write URL, e.g. http://prometheus:9090/api/v1/write")
    username: str | None = Field(None, description="basic auth user; the password comes from "
                                 "VIGIL_SINK_REMOTE_WRITE_PASSWORD or VIGIL_SINK_REMOTE_WRITE_PASSWORD_FILE")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v and not _URL.match(v):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v


class GraphiteConfig(PushConfig):
    address: str = Field("127.0.0.1:2003", description="carbon's plaintext listener, HOST:PORT")
    path_template: str = Field("vigil.{subject}.{name}.{metric}.{window}.{aggregate}",
                               description="the metric path; fields: subject, name, metric, window, aggregate")

    @field_validator("address")
    @classmethod
    def _check_address(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v

    @field_validator("path_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        PathTemplate(v)  # raises ValueError naming the unknown field
        return v


class OtlpConfig(PushConfig):
    endpoint: str = Field("", description="the OTLP/HTTP base URL; metrics go to <endpoint>/v1/metrics")
    service_name: str = Field("vigil", description="resource attribute service.name")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        if v and not _URL.match(v):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v.rstrip("/")


class SinksConfig(BaseModel):
    """The `sinks` section of the settings."""

    model_config = ConfigDict(extra="forbid")

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    remote_write: RemoteWriteConfig = Field(default_factory=RemoteWriteConfig)
    graphite: GraphiteConfig = Field(default_factory=GraphiteConfig)
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    senders: Literal["process", "thread"] = Field(
        "process", description="where the push sinks batch, encode and send: `process` (default), a child "
        "process of the worker, so their CPU never competes with the pipeline for the worker's GIL; `thread`, "
        "threads of the worker (one process fewer; encoding then slows the pipeline by about 2 µs per event "
        "at 0.02 closed windows per event)")

    @model_validator(mode="after")
    def _check_destinations(self) -> SinksConfig:
        if self.remote_write.enabled and not self.remote_write.url:
            raise ValueError("remote_write.url: set the receiver's URL to enable the remote-write sink")
        if self.otlp.enabled and not self.otlp.endpoint:
            raise ValueError("otlp.endpoint: set the collector's OTLP/HTTP URL to enable the OTLP sink")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> SinksConfig:
        """The validated `sinks` section (ConfigError naming the field when it is wrong)."""
        return section_model(cls, settings, "sinks")

    @property
    def any_enabled(self) -> bool:
        return any(s.enabled for s in (self.prometheus, self.remote_write, self.graphite, self.otlp))


def sinks_on(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """`settings` with the given sinks enabled (e.g. for a benchmark or a test):
    `sinks_on(s, prometheus={}, graphite={"address": "127.0.0.1:2003"})`."""
    merged = dict(settings.sinks)
    for name, section in sections.items():
        merged[name] = {**merged.get(name, {}), **section, "enabled": True}
    return settings.model_copy(update={"sinks": merged})
