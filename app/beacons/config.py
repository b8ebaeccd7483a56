"""beacons.yaml: who the events are about, which beacons run how often and watch what, and where
events wait while Kafka is away. Every key is optional; `vigil beacon run` without a file runs
the host beacons (load, cpu, memory, disk /, net, heartbeat) at their default intervals.

Errors name the file, the line and the field: `beacons.yaml:12: beacons.disk.thresholds.warning: ...`.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from app.beacons.base import Thresholds
from app.config import ConfigError, resolve_secret_refs
from app.durations import PositiveDurationMs
from app.yamlfile import load_yaml_model

__all__ = [
    "BUILTIN_BEACONS",
    "BeaconConfigError",
    "BeaconSet",
    "BeaconsConfig",
    "CpuConfig",
    "CustomConfig",
    "DiskConfig",
    "FileConfig",
    "FileSpec",
    "HeartbeatConfig",
    "HttpCheck",
    "HttpConfig",
    "LoadConfig",
    "MemoryConfig",
    "NetConfig",
    "ProcessConfig",
    "ProcessSpec",
    "ServiceConfig",
    "ServiceSpec",
    "SpoolConfig",
    "TcpCheck",
    "TcpConfig",
    "ThresholdsConfig",
    "load_beacons_config",
    "parse_byte_size",
]

BUILTIN_BEACONS = ("load", "cpu", "memory", "disk", "net", "process", "service", "file", "http", "tcp", "heartbeat")


class BeaconConfigError(ConfigError):
    """beacons.yaml is invalid; the message names file, line and field."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_byte_size(value: str | int) -> int:
    """Bytes from 1048576, "64MB", "64MiB", "500k" (decimal units; `i` forms are binary)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size (use e.g. 1048576, 500kB, 64MB, 1GiB)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def _byte_size(value: Any) -> Any:
    return parse_byte_size(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


DurationMs = PositiveDurationMs  # beacons.yaml durations
ByteSize = Annotated[int, BeforeValidator(_byte_size), Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ThresholdsConfig(_Model):
    """warning / critical levels (higher is worse); `null` switches a level off."""

    warning: float | None = None
    critical: float | None = None
    hysteresis: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsConfig:
        if self.warning is not None and self.critical is not None and self.warning > self.critical:
            raise ValueError(f"warning ({self.warning:g}) must not be above critical ({self.critical:g})")
        return self

    def to_thresholds(self) -> Thresholds:
        """The pure Thresholds the beacons compare with."""
        return Thresholds(warning=self.warning, critical=self.critical, hysteresis=self.hysteresis)


class _Section(_Model):
    """Common to every beacon: `enabled` and `interval`. `load: false` is short for enabled: false."""

    enabled: bool = True
    interval_ms: DurationMs = Field(30_000, alias="interval")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, bool):
            return {"enabled": data}
        return data


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


def _unique(items: list[Any], key: Any, what: str, hint: str = "give one a distinct `name`") -> None:
    """Each watched item is one identity (subject + name): two with the same name would clash."""
    seen: set[str] = set()
    for item in items:
        label = str(key(item))
        if label in seen:
            raise ValueError(f"two {what} named {label!r}: {hint}")
        seen.add(label)


# -- host beacons ----------------------------------------------------------------------------------
class LoadThresholds(ThresholdsConfig):
    warning: float | None = 1.5
    critical: float | None = 3.0
    hysteresis: float = Field(0.2, ge=0)


class LoadConfig(_Section):
    """1/5/15-minute load; thresholds apply to the 5-minute load per CPU."""

    thresholds: LoadThresholds = Field(default_factory=LoadThresholds)


class CpuThresholds(ThresholdsConfig):
    warning: float | None = 90.0
    critical: float | None = 98.0
    hysteresis: float = Field(5.0, ge=0)


class CpuConfig(_Section):
    """CPU busy % over the interval (all CPUs)."""

    thresholds: CpuThresholds = Field(default_factory=CpuThresholds)


class MemoryThresholds(ThresholdsConfig):
    warning: float | None = 90.0
    critical: float | None = 97.0
    hysteresis: float = Field(2.0, ge=0)


class MemoryConfig(_Section):
    """Memory used % (of total, what is not available)."""

    thresholds: MemoryThresholds = Field(default_factory=MemoryThresholds)


class DiskThresholds(ThresholdsConfig):
    warning: float | None = 85.0
    critical: float | None = 95.0
    hysteresis: float = Field(1.0, ge=0)


class DiskConfig(_Section):
    """Usage per mount point; `mounts: all` watches every physical partition."""

    interval_ms: DurationMs = Field(60_000, alias="interval")
    mounts: list[str] = Field(default_factory=lambda: ["/"])
    thresholds: DiskThresholds = Field(default_factory=DiskThresholds)

    @field_validator("mounts", mode="before")
    @classmethod
    def _mounts(cls, v: Any) -> Any:
        v = _listify(v)
        for mount in v or []:
            if isinstance(mount, str) and mount != "all" and not mount.startswith("/"):
                raise ValueError(f"{mount!r}: a mount point is an absolute path (or `all`)")
        return v


class NetConfig(_Section):
    """Interfaces up/down, addresses changed, and traffic rates."""

    interfaces: list[str] | None = Field(None, description="only these (default: all but `ignore`)")
    ignore: list[str] = Field(default_factory=lambda: ["lo"])
    down_severity: int = Field(1, ge=0, le=3, description="severity of an interface going down")


# -- things on the host ----------------------------------------------------------------------------
class ProcessSpec(_Model):
    """A process to find: by pid file, by command-line substring, or by process name (default: `name`)."""

    name: str = Field(min_length=1)
    match: str | None = Field(None, description="process name to look for (default: name)")
    cmdline: str | None = Field(None, description="substring of the command line")
    pidfile: Path | None = None
    min_count: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_way(self) -> ProcessSpec:
        if self.pidfile is not None and (self.match or self.cmdline):
            raise ValueError("give either pidfile or match/cmdline, not both")
        return self


class ProcessConfig(_Section):
    processes: list[ProcessSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> ProcessConfig:
        _unique(self.processes, lambda p: p.name, "processes")
        return self


class ServiceSpec(ProcessSpec):
    """A service: its systemd unit state where systemd runs, else its process (as ProcessSpec)."""

    unit: str | None = Field(None, description="systemd unit (default: <name>.service)")

    @property
    def unit_name(self) -> str:
        return self.unit or (self.name if "." in self.name else f"{self.name}.service")


class ServiceConfig(_Section):
    services: list[ServiceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> ServiceConfig:
        _unique(self.services, lambda p: p.name, "services")
        return self


class FileSpec(_Model):
    path: Path
    managed: bool | None = Field(None, description="changes are WARNING (default: the section's `managed`)")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class FileConfig(_Section):
    """Watched files: content hash, mode, owner; removed / created."""

    paths: list[FileSpec] = Field(default_factory=list)
    managed: bool = True

    @field_validator("paths", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        return _listify(v)

    @model_validator(mode="after")
    def _distinct(self) -> FileConfig:
        _unique(self.paths, lambda f: f.path, "entries", "list each path once")
        return self


# -- endpoints -------------------------------------------------------------------------------------
class HttpCheck(_Model):
    url: str
    name: str | None = None
    method: str = "GET"
    timeout_ms: DurationMs = Field(5_000, alias="timeout")
    expect: list[int] | None = Field(None, description="acceptable status codes (default 200-399)")
    latency_ms: ThresholdsConfig = Field(default_factory=ThresholdsConfig, alias="latency")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/]+", v):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v

    @property
    def label(self) -> str:
        return self.name or self.url


class HttpConfig(_Section):
    checks: list[HttpCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> HttpConfig:
        _unique(self.checks, lambda c: c.label, "http checks")
        return self


class TcpCheck(_Model):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    name: str | None = None
    timeout_ms: DurationMs = Field(3_000, alias="timeout")
    latency_ms: ThresholdsConfig = Field(default_factory=ThresholdsConfig, alias="latency")

    @model_validator(mode="before")
    @classmethod
    def _from_host_port(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"port": data}
        if isinstance(data, str):
            host, sep, port = data.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"{data!r}: expected HOST:PORT")
            return {"host": host or "127.0.0.1", "port": int(port)}
        return data

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class TcpConfig(_Section):
    checks: list[TcpCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> TcpConfig:
        _unique(self.checks, lambda c: c.label, "tcp checks")
        return self


class HeartbeatConfig(_Section):
    """An event with a ttl every interval, so a silent host is noticed."""

    interval_ms: DurationMs = Field(10_000, alias="interval")
    ttl_ms: DurationMs | None = Field(None, alias="ttl", description="default: 3 × interval")

    @property
    def ttl_s(self) -> float:
        return (self.ttl_ms or 3 * self.interval_ms) / 1000


class CustomConfig(_Section):
    """Settings for a @beacon function: enabled, and interval (default: the decorator's)."""

    interval_ms: DurationMs | None = Field(None, alias="interval")  # type: ignore[assignment]


class BeaconSet(_Model):
    load: LoadConfig = Field(default_factory=LoadConfig)
    cpu: CpuConfig = Field(default_factory=CpuConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    disk: DiskConfig = Field(default_factory=DiskConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    file: FileConfig = Field(default_factory=FileConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    tcp: TcpConfig = Field(default_factory=TcpConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    custom: dict[str, CustomConfig] = Field(default_factory=dict)


class SpoolConfig(_Model):
    """Where events wait while Kafka is unreachable, and how much may wait (oldest dropped past it)."""

    dir: Path | None = Field(None, description="default: <settings home>/beacon-spool")
    max_events: int = Field(100_000, ge=1)
    max_bytes: ByteSize = Field(64 * 2**20)
    delivery_timeout_ms: DurationMs = Field(30_000, alias="delivery_timeout",
                                            description="an event not acknowledged within this goes to the spool")


class BeaconsConfig(_Model):
    """The whole beacons.yaml."""

    subject: str = Field(default_factory=socket.gethostname, min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)
    plugins: list[str] = Field(default_factory=list)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    beacons: BeaconSet = Field(default_factory=BeaconSet)

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, v: Any) -> Any:
        # In a DaemonSet the host name is the pod's: `subject: ${env:NODE_NAME}` names the node.
        try:
            return resolve_secret_refs(v, where=str(v))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_strings(cls, v: Any) -> Any:
        # YAML reads `dc: 1` as a number; tags are strings on the wire.
        if isinstance(v, dict):
            return {str(k): (str(x).lower() if isinstance(x, bool) else str(x)) if isinstance(x, str | int | float)
                    else x for k, x in v.items()}
        return v

    @field_validator("plugins", mode="before")
    @classmethod
    def _plugins(cls, v: Any) -> Any:
        return _listify(v)


def load_beacons_config(path: Path | str | None) -> BeaconsConfig:
    """Read and validate a beacons file; None means every default. Raises BeaconConfigError."""
    return load_yaml_model(path, BeaconsConfig, error=BeaconConfigError, what="beacons config",
                           top_level="a mapping (subject, tags, beacons, spool, plugins)", unknown_hint=_hint)


def _hint(loc: tuple[Any, ...]) -> str:
    if len(loc) == 2 and loc[0] == "beacons":
        return (f" (built-in beacons: {', '.join(BUILTIN_BEACONS)}; settings of @beacon functions go "
                f"under beacons.custom.<name>)")
    return ""
