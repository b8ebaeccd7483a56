"""Vigil's one settings model: `vigil.yaml` (or the file named by VIGIL_CONFIG) plus VIGIL_* env vars.

Env wins over the file. Flat names on purpose, so the common ones read naturally:
VIGIL_KAFKA_BOOTSTRAP, VIGIL_SCHEMA_REGISTRY_URL, VIGIL_STATE_DIR. librdkafka settings are passed
through untouched in `kafka_config` (dotted keys, e.g. `security.protocol: SASL_SSL`), so SASL/SSL
clusters work; a value may be `${env:NAME}` or `${file:/path}` so secrets never sit in the file.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.dead_letter_limit import DEFAULT_BURST, DEFAULT_RATE_PER_S, DEFAULT_SUMMARY_INTERVAL_S
from app.durations import parse_duration_ms
from app.yamlfile import yaml_error_line

__all__ = ["ConfigError", "Settings", "load_settings", "resolve_secret_refs", "section_model"]

DEFAULT_CONFIG_FILE = "vigil.yaml"
_SECRET_REF = re.compile(r"^\$\{(env|file):([^}]+)\}$")


class ConfigError(Exception):
    """Configuration is invalid; the message says which field and what to do."""


def resolve_secret_refs(value: Any, *, where: str) -> Any:
    """Expand `${env:NAME}` / `${file:/path}` in a config value (strings only)."""
    if not isinstance(value, str):
        return value
    m = _SECRET_REF.match(value.strip())
    if not m:
        return value
    kind, ref = m.groups()
    if kind == "env":
        if ref not in os.environ:
            raise ConfigError(f"{where}: environment variable {ref} is not set")
        return os.environ[ref]
    try:
        return Path(ref).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {ref}: {exc.strerror}") from exc


def _retention_ms(value: str | int | float) -> int:
    """A retention in ms: a duration ("7d", "12h", a number of seconds), or 0 for "never"."""
    if not isinstance(value, bool) and (value == 0 or (isinstance(value, str) and value.strip() in ("0", "0s"))):
        return 0
    return parse_duration_ms(value)


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads vigil.yaml; a missing file is fine, a broken one is an error with its line."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.path}{yaml_error_line(exc)}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: top level must be a mapping of settings")
        return data


class Settings(BaseSettings):
    """Everything a Vigil process needs to find Kafka, the registry and its local state."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid", populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, HOST:PORT[,...]")
    kafka_config: dict[str, Any] = Field(
        default_factory=dict, description="librdkafka settings passed through (dotted keys)"
    )
    schema_registry_url: str = Field("http://127.0.0.1:8081", description="Confluent-API schema registry")
    schema_registry_user: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_registry_retry_deadline_s: float = Field(
        5.0, ge=0, description="how long a registry call retries a registry that is down or overloaded (0: once)")
    topic_prefix: str = Field("", description="prefix for every topic name (shared clusters)")
    home: Path = Field(Path(".vigil"), description="local dev stack: jars, data, pid files")
    state_dir: Path = Field(Path(".vigil/state"), description="RocksDB state of workers")
    topics_file: Path = Path("topics.yaml")
    schemas_dir: Path = Path("schemas")
    rules_dir: Path = Path("rules")
    rules_state_retention: str | int | float = Field(
        "7d", description="rules stage: a rule group without events this long (event time) loses its trigger "
        "state and throttle, unless the rule sets its own `state_retention` (0: never)")
    dev_kafka_port: int = 9092
    dev_controller_port: int = 9093
    dev_registry_port: int = 8081
    dev_kafka_heap: str = "-Xms256m -Xmx1g"
    standby_replicas: int = Field(0, ge=0, le=16, description="workers: warm copies of each partition's state "
                                  "kept on this many other workers (vigil worker --standby-replicas)")
    #: Dead letters written per source and reason (app.dead_letter_limit): the rest are counted and summarised.
    dlq_rate_per_s: float = Field(DEFAULT_RATE_PER_S, gt=0, description="dead letters written per second per "
                                  "source and reason once the burst is spent (the rest: counted and summarised)")
    dlq_burst: int = Field(DEFAULT_BURST, ge=1, description="dead letters written at once per source and reason")
    dlq_summary_interval_s: float = Field(DEFAULT_SUMMARY_INTERVAL_S, gt=0, description="one summary record of "
                                          "the dead letters held back per source and reason at most this often")
    #: Sections of the stages, validated by each stage's own model when it is built from these
    #: settings (section_model): this module imports nothing from the stages.
    pipeline: dict[str, Any] = Field(default_factory=dict,
                                     description="built-in pipeline: window sizes, grace, flap policy, retention")
    ui: dict[str, Any] = Field(default_factory=dict,
                               description="`vigil ui`: listen address, workers, token, retention (app.web.config)")
    sinks: dict[str, Any] = Field(default_factory=dict, description="metric sinks of closed windows: prometheus, "
                                  "remote_write, graphite, otlp, each off by default (app.sinks.config)")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {v!r}")
        return v

    @field_validator("rules_state_retention")
    @classmethod
    def _check_retention(cls, v: str | int | float) -> str | int | float:
        _retention_ms(v)
        return v

    @property
    def rules_state_retention_ms(self) -> int:
        """`rules_state_retention` in ms (0: never)."""
        return _retention_ms(self.rules_state_retention)

    @field_validator("schema_registry_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/]+", v):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("kafka_config")
    @classmethod
    def _check_kafka_config(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"kafka_config[{key!r}] must be a scalar, got {type(value).__name__}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("VIGIL_CONFIG", DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, _YamlFileSource(settings_cls, path), file_secret_settings)

    def client_config(self) -> dict[str, Any]:
        """librdkafka base config: bootstrap plus pass-through settings with secrets resolved."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        for key, value in self.kafka_config.items():
            conf[key] = resolve_secret_refs(value, where=f"kafka_config[{key!r}]")
        return conf

    def topic(self, name: str) -> str:
        """The real topic name for a logical one (applies `topic_prefix`)."""
        return f"{self.topic_prefix}{name}"


def _problems(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(f"{'.'.join([prefix, *(str(p) for p in err['loc'])]).strip('.') or 'settings'}: {err['msg']}"
                     for err in exc.errors())


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from file + env + explicit overrides (CLI flags); raise ConfigError on bad input."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_problems(exc)}") from exc


M = TypeVar("M", bound=BaseModel)


def section_model(model: type[M], settings: Settings, section: str) -> M:
    """A stage's settings section (e.g. `pipeline`) validated by the stage's model; ConfigError
    naming the field (`pipeline.grace: ...`) when it is wrong."""
    try:
        return model.model_validate(getattr(settings, section))
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_problems(exc, section)}") from exc


@lru_cache(maxsize=1)
def default_settings() -> Settings:
    """Process-wide settings for code paths that are not handed a Settings explicitly."""
    return load_settings()
