"""topics.yaml: the declared topics (partitions, replication, configs, value schema)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["TopicSpec", "TopicsFile", "TopicsFileError", "load_topics_file"]


class TopicsFileError(Exception):
    """topics.yaml is invalid; message names the file, topic and field."""


def _config_strings(v: dict | None) -> dict[str, str]:
    """Kafka configs are strings on the wire; YAML gives ints and bools."""
    return {str(k): (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in (v or {}).items()}


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    partitions: int = Field(ge=1)
    replication: int = Field(ge=1)
    config: dict[str, str] = Field(default_factory=dict)
    value_schema: str | None = None
    #: agents keep state per partition of this topic (keyed like it): growing it moves keys away
    #: from their state, so `topics apply` refuses unless told (see app.topics.diff)
    stateful: bool = False

    _stringify = field_validator("config", mode="before")(lambda cls, v: _config_strings(v))


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partitions: int = Field(6, ge=1)
    replication: int = Field(1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)

    _stringify = field_validator("config", mode="before")(lambda cls, v: _config_strings(v))


class TopicsFile(BaseModel):
    topics: list[TopicSpec]

    def by_name(self) -> dict[str, TopicSpec]:
        return {t.name: t for t in self.topics}

    def with_prefix(self, prefix: str) -> TopicsFile:
        """The same topics under `prefix` (shared clusters, isolated tests)."""
        if not prefix:
            return self
        return TopicsFile(topics=[t.model_copy(update={"name": prefix + t.name}) for t in self.topics])


def load_topics_file(path: Path) -> TopicsFile:
    """Parse topics.yaml, applying `defaults` to every topic."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise TopicsFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TopicsFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("topics"), dict):
        raise TopicsFileError(f"{path}: expected a mapping with a `topics:` mapping of name -> settings")
    unknown = set(raw) - {"defaults", "topics"}
    if unknown:
        raise TopicsFileError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: defaults, topics")
    try:
        defaults = _Defaults(**(raw.get("defaults") or {}))
    except ValidationError as exc:
        raise TopicsFileError(f"{path}: defaults: {_first_error(exc)}") from exc
    topics = []
    for name, body in raw["topics"].items():
        body = dict(body or {})
        merged = {"name": str(name), "partitions": defaults.partitions, "replication": defaults.replication,
                  **body, "config": {**defaults.config, **(body.get("config") or {})}}
        try:
            topics.append(TopicSpec(**merged))
        except ValidationError as exc:
            raise TopicsFileError(f"{path}: topic {name}: {_first_error(exc)}") from exc
    return TopicsFile(topics=topics)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
