"""What each registry request means, as pure functions of a RegistryState (no Kafka, no HTTP).

Queries return values; writes are *plans*: they return (result, records to append). The store
runs a plan against a state that is known to be complete and appends its records atomically,
which is what makes ids and versions agree across instances (see store.py).
Semantics follow the Confluent Schema Registry: soft then permanent deletes, versions that keep
counting after a soft delete, ids shared by identical schemas in different subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from app.registry.compat import (
    DEFAULT_LEVEL,
    InvalidLevel,
    InvalidSchema,
    ParsedSchema,
    check_parsed,
    normalize_level,
    parse_schema,
)
from app.registry.errors import ApiError
from app.registry.state import (
    Record,
    RegistryState,
    SubjectVersion,
    config_record,
    max_id_record,
    schema_record,
    schema_tombstone,
)

__all__ = [
    "LATEST",
    "Plan",
    "SchemaRequest",
    "check_compatibility",
    "effective_level",
    "get_config",
    "get_version",
    "list_subjects",
    "list_versions",
    "lookup",
    "parse_version",
    "plan_delete_config",
    "plan_delete_subject",
    "plan_delete_version",
    "plan_register",
    "plan_set_config",
    "schema_by_id",
]

T = TypeVar("T")
#: A write: given the current state, the result to answer and the records that make it true.
Plan = Callable[[RegistryState], tuple[T, list[Record]]]

LATEST = "latest"
_MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class SchemaRequest:
    """The body of register / lookup / compatibility requests, validated."""

    parsed: ParsedSchema
    schema_type: str = "AVRO"

    @classmethod
    def from_body(cls, body: Any) -> SchemaRequest:
        """Validate {"schema": ..., "schemaType"?: ..., "references"?: [...]}; raise ApiError 42201."""
        if not isinstance(body, dict):
            raise ApiError.invalid_schema('the request body must be a JSON object like {"schema": "..."}')
        schema_type = body.get("schemaType") or "AVRO"
        if not isinstance(schema_type, str) or schema_type.upper() != "AVRO":
            raise ApiError.invalid_schema(f"schemaType {schema_type!r} is not supported; this registry "
                                          f"stores AVRO schemas only")
        if body.get("references"):
            raise ApiError.invalid_schema("schema references are not supported; inline the referenced "
                                          "types into the schema")
        if "schema" not in body:
            raise ApiError.invalid_schema('the request body has no "schema" field')
        try:
            return cls(parse_schema(body["schema"]))
        except InvalidSchema as exc:
            raise ApiError.invalid_schema(exc.reason) from None


def parse_version(raw: str | int) -> int | str:
    """A version path segment: 1..2^31-1, "latest" or -1 (also latest); raise ApiError 42202."""
    text = str(raw).strip()
    if text.lower() == LATEST or text == "-1":
        return LATEST
    try:
        number = int(text)
    except ValueError:
        raise ApiError.invalid_version(raw) from None
    if not 1 <= number <= _MAX_VERSION:
        raise ApiError.invalid_version(raw)
    return number


def effective_level(state: RegistryState, subject: str | None) -> str:
    """The level that applies to a subject: its own, else the global one, else BACKWARD."""
    return (subject is not None and state.level(subject)) or state.level(None) or DEFAULT_LEVEL


# -- queries ---------------------------------------------------------------------------------
def list_subjects(state: RegistryState, *, deleted: bool = False, deleted_only: bool = False,
                  prefix: str = "") -> list[str]:
    """Subject names (with soft-deleted ones if asked), optionally only those with a prefix."""
    names = state.subjects(deleted=deleted or deleted_only)
    if deleted_only:
        live = set(state.subjects())
        names = [n for n in names if n not in live]
    return [n for n in names if n.startswith(prefix)]


def list_versions(state: RegistryState, subject: str, *, deleted: bool = False,
                  deleted_only: bool = False) -> list[int]:
    """Version numbers of a subject; 40401 if it has none."""
    every = state.versions(subject, deleted=deleted or deleted_only)
    if not every:
        raise ApiError.subject_not_found(subject)
    return [sv.version for sv in every if sv.deleted or not deleted_only]


def get_version(state: RegistryState, subject: str, version: int | str, *, deleted: bool = False) -> SubjectVersion:
    """One version of a subject ("latest" allowed); 40401 / 40402 when absent."""
    versions = state.versions(subject, deleted=deleted)
    if not versions:
        raise ApiError.subject_not_found(subject)
    if version == LATEST:
        return versions[-1]
    for sv in versions:
        if sv.version == version:
            return sv
    raise ApiError.version_not_found(subject, version)


def schema_by_id(state: RegistryState, schema_id: int) -> tuple[str, str]:
    """(schema text, schema type) of a global id; 40403 if no version uses it."""
    text = state.schema_text(schema_id)
    if text is None:
        raise ApiError.schema_not_found(f"Schema {schema_id} not found")
    return text, state.schema_type(schema_id)


def lookup(state: RegistryState, subject: str, request: SchemaRequest, *, deleted: bool = False) -> SubjectVersion:
    """The version of `subject` holding this schema; 40401 no such subject, 40403 not under it."""
    versions = state.versions(subject, deleted=deleted)
    if not versions:
        raise ApiError.subject_not_found(subject)
    # Newest live match first: that is the version a client would be writing with.
    for sv in sorted(versions, key=lambda sv: (not sv.deleted, sv.version), reverse=True):
        if state.canonical_of(sv.schema_id) == request.parsed.canonical:
            return sv
    raise ApiError.schema_not_found(f"Schema not found under subject '{subject}'")


def check_compatibility(state: RegistryState, subject: str, version: int | str,
                        request: SchemaRequest) -> tuple[bool, list[str]]:
    """Would `request` be accepted after `version` of `subject` (or all versions, for "latest")?"""
    live = state.versions(subject)
    if version == LATEST:
        against = live  # check_parsed picks the latest or all of them, by level
    else:
        if not live and not state.versions(subject, deleted=True):
            raise ApiError.subject_not_found(subject)
        against = [get_version(state, subject, version)]
    return _check(state, subject, request, against)


def _check(state: RegistryState, subject: str, request: SchemaRequest,
           against: list[SubjectVersion]) -> tuple[bool, list[str]]:
    existing: list[ParsedSchema] = []
    for sv in against:
        try:
            existing.append(parse_schema(sv.schema))
        except InvalidSchema as exc:
            return False, [f"version {sv.version} of '{subject}' is not a schema this registry can read: {exc.reason}"]
    labels = [f"version {sv.version}" for sv in against]
    return check_parsed(request.parsed, existing, effective_level(state, subject), labels=labels)


def get_config(state: RegistryState, subject: str | None, *, default_to_global: bool = False) -> str:
    """The compatibility level of a subject (40408 if it has none of its own), or the global one."""
    if subject is None:
        return effective_level(state, None)
    level = state.level(subject)
    if level is not None:
        return level
    if default_to_global:
        return effective_level(state, None)
    raise ApiError.subject_level_config_not_set(subject)


# -- writes ----------------------------------------------------------------------------------
def plan_register(subject: str, request: SchemaRequest) -> Plan[SubjectVersion]:
    """Register a schema under a subject: the existing version if already there, else a new one."""

    def plan(state: RegistryState) -> tuple[SubjectVersion, list[Record]]:
        live = state.versions(subject)
        for sv in reversed(live):
            if state.canonical_of(sv.schema_id) == request.parsed.canonical:
                return sv, []
        ok, reasons = _check(state, subject, request, live)
        if not ok:
            raise ApiError.incompatible(subject, reasons)
        records: list[Record] = []
        schema_id = state.id_for(request.schema_type, request.parsed.canonical)
        if schema_id is None:
            schema_id = state.max_id + 1
            records.append(max_id_record(schema_id))
            text = request.parsed.text
        else:
            # One id, one text: every version with this id serves the same bytes.
            text = state.schema_text(schema_id) or request.parsed.text
        every = state.versions(subject, deleted=True)
        version = (every[-1].version if every else 0) + 1
        sv = SubjectVersion(subject=subject, version=version, schema_id=schema_id, schema=text,
                            schema_type=request.schema_type)
        records.insert(0, schema_record(sv))
        return sv, records

    return plan


def plan_delete_subject(subject: str, *, permanent: bool = False) -> Plan[list[int]]:
    """Soft-delete every version (permanent: remove soft-deleted versions for good)."""

    def plan(state: RegistryState) -> tuple[list[int], list[Record]]:
        every = state.versions(subject, deleted=True)
        if not every:
            raise ApiError.subject_not_found(subject)
        live = [sv for sv in every if not sv.deleted]
        if permanent:
            if live:
                raise ApiError.subject_not_soft_deleted(subject)
            records = [schema_tombstone(subject, sv.version) for sv in every]
        else:
            if not live:
                raise ApiError.subject_soft_deleted(subject)
            records = [schema_record(_soft_deleted(sv)) for sv in live]
            every = live
        # Like Confluent, the subject's own compatibility level goes with it.
        if state.level(subject) is not None:
            records.append(config_record(subject, None))
        return [sv.version for sv in every], records

    return plan


def plan_delete_version(subject: str, version: int | str, *, permanent: bool = False) -> Plan[int]:
    """Soft-delete one version (permanent: remove a soft-deleted version for good)."""

    def plan(state: RegistryState) -> tuple[int, list[Record]]:
        sv = get_version(state, subject, version, deleted=permanent)
        if permanent:
            if not sv.deleted:
                raise ApiError.version_not_soft_deleted(subject, sv.version)
            return sv.version, [schema_tombstone(subject, sv.version)]
        return sv.version, [schema_record(_soft_deleted(sv))]

    return plan


def plan_set_config(subject: str | None, body: Any) -> Plan[str]:
    """Set the level from {"compatibility": L} (or {"compatibilityLevel": L}); 42203 if invalid."""
    raw = body.get("compatibility", body.get("compatibilityLevel")) if isinstance(body, dict) else None
    try:
        level = normalize_level(raw)
    except InvalidLevel as exc:
        raise ApiError.invalid_level(f"Invalid compatibility level: {exc}") from None

    def plan(state: RegistryState) -> tuple[str, list[Record]]:
        if state.level(subject) == level:
            return level, []
        return level, [config_record(subject, level)]

    return plan


def plan_delete_config(subject: str | None) -> Plan[str]:
    """Unset a subject's level (or reset the global one); answers the level that was in force."""

    def plan(state: RegistryState) -> tuple[str, list[Record]]:
        if subject is None:
            return effective_level(state, None), [config_record(None, None)] if state.level(None) else []
        level = state.level(subject)
        if level is None:
            if not state.versions(subject, deleted=True):
                raise ApiError.subject_not_found(subject)
            raise ApiError.subject_level_config_not_set(subject)
        return level, [config_record(subject, None)]

    return plan


def _soft_deleted(sv: SubjectVersion) -> SubjectVersion:
    return replace(sv, deleted=True)
