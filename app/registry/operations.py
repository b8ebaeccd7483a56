"""What each registry request means, as pure functions of a RegistryState (no Kafka, no HTTP).

Queries return values; writes are *plans*: they return (result, records to append). The store
runs a plan against a state that is known to be complete and appends its records atomically,
which is what makes ids and versions agree across instances (see store.py).
Semantics follow the Confluent Schema Registry: soft then permanent deletes, versions that keep
counting after a soft delete, ids shared by identical schemas in different subjects, modes that
refuse writes, references that must be deleted before what they reference.
Registration, the one write with many rules, is in registration.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from app.registry.compat import DEFAULT_LEVEL, InvalidLevel, InvalidSchema, ParsedSchema, check_parsed
from app.registry.contracts import InvalidContract, parse_config_update
from app.registry.errors import ApiError
from app.registry.modes import DEFAULT_MODE, IMPORT, InvalidMode, effective_mode, is_read_only, normalize_mode
from app.registry.references import parse_stored
from app.registry.schema_request import LATEST, Resolved, SchemaRequest
from app.registry.state import (
    LEVEL_FIELD,
    Record,
    RegistryState,
    SubjectVersion,
    config_record,
    mode_record,
    schema_record,
    schema_tombstone,
)

__all__ = [
    "Plan",
    "check_compatibility",
    "check_writable",
    "config_in_force",
    "effective_level",
    "get_config",
    "get_mode",
    "get_version",
    "latest_with_metadata",
    "list_schemas",
    "list_subjects",
    "list_versions",
    "lookup",
    "mode_in_force",
    "plan_delete_config",
    "plan_delete_mode",
    "plan_delete_subject",
    "plan_delete_version",
    "plan_set_config",
    "plan_set_mode",
    "referenced_by",
    "schema_by_id",
]

T = TypeVar("T")
#: A write: given the current state, the result to answer and the records that make it true.
Plan = Callable[[RegistryState], tuple[T, list[Record]]]


# -- what is in force ------------------------------------------------------------------------
def effective_level(state: RegistryState, subject: str | None) -> str:
    """The level that applies to a subject: its own, else the global one, else BACKWARD."""
    return (subject is not None and state.level(subject)) or state.level(None) or DEFAULT_LEVEL


def config_in_force(state: RegistryState, subject: str | None) -> dict[str, Any]:
    """Every config field that applies to a subject: its own over the global ones, with the level."""
    merged = {**(state.config(None) or {}), **((subject is not None and state.config(subject)) or {})}
    merged[LEVEL_FIELD] = effective_level(state, subject)
    return merged


def mode_in_force(state: RegistryState, subject: str | None) -> str:
    """The mode that applies to a subject (global READONLY_OVERRIDE beats the subject's own)."""
    return effective_mode(state.mode(None), state.mode(subject) if subject is not None else None)


def check_writable(state: RegistryState, subject: str | None) -> None:
    """42205 if the subject (None: the registry) is read-only."""
    mode = mode_in_force(state, subject)
    if is_read_only(mode):
        where = f"Subject '{subject}'" if subject is not None else "The registry"
        raise ApiError.not_permitted(f"{where} is in read-only mode ({mode}); change it with PUT /mode"
                                     + (f"/{subject}" if subject is not None else ""))


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


def list_schemas(state: RegistryState, *, prefix: str = "", deleted: bool = False,
                 latest_only: bool = False) -> list[SubjectVersion]:
    """Every version of every subject with the prefix, by subject then version (latest_only: the
    latest version of each subject)."""
    found: list[SubjectVersion] = []
    for subject in list_subjects(state, deleted=deleted, prefix=prefix):
        versions = state.versions(subject, deleted=deleted)
        found += versions[-1:] if latest_only else versions
    return found


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


def referenced_by(state: RegistryState, subject: str, version: int | str) -> list[int]:
    """Ids of the live schemas that reference a version (40401 / 40402 if it does not exist)."""
    sv = get_version(state, subject, version)
    return sorted({referrer.schema_id for referrer in state.referrers(sv.subject, sv.version)})


def schema_by_id(state: RegistryState, schema_id: int) -> SubjectVersion:
    """The version that stands for a global id (text, type, references); 40403 if none uses it."""
    found = state.by_id(schema_id)
    if found is None:
        raise ApiError.schema_not_found(f"Schema {schema_id} not found")
    return found


def latest_with_metadata(state: RegistryState, subject: str, properties: Mapping[str, str], *,
                         deleted: bool = False) -> SubjectVersion:
    """The newest version whose metadata properties include `properties`; 40401 / 40403."""
    versions = state.versions(subject, deleted=deleted)
    if not versions:
        raise ApiError.subject_not_found(subject)
    for sv in reversed(versions):
        props = (sv.metadata or {}).get("properties") or {}
        if all(props.get(k) == v for k, v in properties.items()):
            return sv
    raise ApiError.schema_not_found(f"No version of subject '{subject}' has metadata {dict(properties)}")


def lookup(state: RegistryState, subject: str, request: SchemaRequest, *, deleted: bool = False) -> SubjectVersion:
    """The version of `subject` holding this schema; 40401 no such subject, 40403 not under it.
    (A `normalize` flag changes nothing: schemas are compared as sent and normalized alike.)"""
    versions = state.versions(subject, deleted=deleted)
    if not versions:
        raise ApiError.subject_not_found(subject)
    resolved = request.resolve(state)
    # Newest live match first: that is the version a client would be writing with.
    for sv in sorted(versions, key=lambda sv: (not sv.deleted, sv.version), reverse=True):
        if matches(state, sv, resolved):
            return sv
    raise ApiError.schema_not_found(f"Schema not found under subject '{subject}'")


def matches(state: RegistryState, sv: SubjectVersion, resolved: Resolved) -> bool:
    """Is `sv` the schema `resolved` (whatever the spelling, with the same references)?"""
    return state.identity(sv.schema_id) in resolved.identities()


def check_compatibility(state: RegistryState, subject: str, version: int | str | None,
                        request: SchemaRequest) -> tuple[bool, list[str]]:
    """Would `request` be accepted after `version` of `subject`? "latest": against the latest
    version only, whatever the level (as Confluent does); None: against all versions, as the
    level decides (the _TRANSITIVE ones check every version, the others the latest)."""
    live = state.versions(subject)
    if version is None:
        against = live
    elif version == LATEST:
        against = live[-1:]
    else:
        if not live and not state.versions(subject, deleted=True):
            raise ApiError.subject_not_found(subject)
        against = [get_version(state, subject, version)]
    return check_against(state, subject, request.resolve(state).parsed, against)


def check_against(state: RegistryState, subject: str, parsed: ParsedSchema,
                  against: list[SubjectVersion]) -> tuple[bool, list[str]]:
    """`parsed` checked against existing versions under the subject's level."""
    existing: list[ParsedSchema] = []
    for sv in against:
        try:
            existing.append(parse_stored(state, sv))
        except InvalidSchema as exc:
            return False, [f"version {sv.version} of '{subject}' is not a schema this registry can read: {exc.reason}"]
    labels = [f"version {sv.version}" for sv in against]
    return check_parsed(parsed, existing, effective_level(state, subject), labels=labels)


def get_config(state: RegistryState, subject: str | None, *, default_to_global: bool = False) -> dict[str, Any]:
    """The config of a subject (40408 if it has none of its own), or the global one; with the
    level under "compatibilityLevel"."""
    if subject is None or default_to_global:
        return config_in_force(state, subject)
    own = state.config(subject)
    if own is None:
        raise ApiError.subject_level_config_not_set(subject)
    return own


def get_mode(state: RegistryState, subject: str | None, *, default_to_global: bool = False) -> str:
    """The mode of a subject (40409 if it has none of its own), or the global one."""
    if subject is None or default_to_global:
        return mode_in_force(state, subject)
    own = state.mode(subject)
    if own is None:
        raise ApiError.subject_level_mode_not_set(subject)
    return own


# -- deletes ---------------------------------------------------------------------------------
def _refuse_if_referenced(state: RegistryState, versions: list[SubjectVersion]) -> None:
    for sv in versions:
        referrers = state.referrers(sv.subject, sv.version)
        if referrers:
            who = ", ".join(f"'{r.subject}' version {r.version} (id {r.schema_id})" for r in referrers)
            raise ApiError.reference_exists(f"Subject '{sv.subject}' version {sv.version} is referenced by {who}; "
                                            f"delete those first")


def _forget_subject(state: RegistryState, subject: str) -> list[Record]:
    # A subject deleted for good takes its own config and mode along (a soft delete keeps them).
    records = []
    if state.config(subject) is not None:
        records.append(config_record(subject, None))
    if state.mode(subject) is not None:
        records.append(mode_record(subject, None))
    return records


def plan_delete_subject(subject: str, *, permanent: bool = False) -> Plan[list[int]]:
    """Soft-delete every version (permanent: remove soft-deleted versions for good)."""

    def plan(state: RegistryState) -> tuple[list[int], list[Record]]:
        check_writable(state, subject)
        every = state.versions(subject, deleted=True)
        if not every:
            raise ApiError.subject_not_found(subject)
        live = [sv for sv in every if not sv.deleted]
        if permanent:
            if live:
                raise ApiError.subject_not_soft_deleted(subject)
            _refuse_if_referenced(state, every)
            records = [schema_tombstone(subject, sv.version) for sv in every] + _forget_subject(state, subject)
            return [sv.version for sv in every], records
        if not live:
            raise ApiError.subject_soft_deleted(subject)
        _refuse_if_referenced(state, live)
        return [sv.version for sv in live], [schema_record(_soft_deleted(sv)) for sv in live]

    return plan


def plan_delete_version(subject: str, version: int | str, *, permanent: bool = False) -> Plan[int]:
    """Soft-delete one version (permanent: remove a soft-deleted version for good)."""

    def plan(state: RegistryState) -> tuple[int, list[Record]]:
        check_writable(state, subject)
        sv = get_version(state, subject, version, deleted=permanent)
        _refuse_if_referenced(state, [sv])
        if not permanent:
            return sv.version, [schema_record(_soft_deleted(sv))]
        if not sv.deleted:
            raise ApiError.version_not_soft_deleted(subject, sv.version)
        records = [schema_tombstone(subject, sv.version)]
        if len(state.versions(subject, deleted=True)) == 1:  # the last one: the subject is gone
            records += _forget_subject(state, subject)
        return sv.version, records

    return plan


def _soft_deleted(sv: SubjectVersion) -> SubjectVersion:
    return SubjectVersion(subject=sv.subject, version=sv.version, schema_id=sv.schema_id, schema=sv.schema,
                          schema_type=sv.schema_type, deleted=True, references=sv.references,
                          metadata=sv.metadata, rule_set=sv.rule_set)


# -- config ----------------------------------------------------------------------------------
def plan_set_config(subject: str | None, body: Any) -> Plan[dict[str, Any]]:
    """Set config fields from a PUT /config body ({"compatibility": L, "normalize": true, ...});
    fields left out keep their value, null clears one. Answers what was set, as Confluent does
    (the level under "compatibility"); 42203 for a bad level or field."""
    try:
        update = parse_config_update(body)
    except InvalidLevel as exc:
        raise ApiError.invalid_level(f"Invalid compatibility level: {exc}") from None
    except InvalidContract as exc:
        if exc.rule_set:
            raise ApiError.invalid_rule_set(str(exc)) from None
        raise ApiError.invalid_level(f"Invalid config: {exc}") from None
    answer = {("compatibility" if k == LEVEL_FIELD else k): v for k, v in update.items()}

    def plan(state: RegistryState) -> tuple[dict[str, Any], list[Record]]:
        check_writable(state, subject)
        old = state.config(subject) or {}
        new = {k: v for k, v in {**old, **update}.items() if v is not None}
        return answer, ([] if new == old else [config_record(subject, new)])

    return plan


def plan_delete_config(subject: str | None) -> Plan[dict[str, Any]]:
    """Unset a subject's config (or reset the global one); answers the config that was in force."""

    def plan(state: RegistryState) -> tuple[dict[str, Any], list[Record]]:
        check_writable(state, subject)
        if subject is None:
            return config_in_force(state, None), [config_record(None, None)] if state.config(None) else []
        own = state.config(subject)
        if own is None:
            if not state.versions(subject, deleted=True):
                raise ApiError.subject_not_found(subject)
            raise ApiError.subject_level_config_not_set(subject)
        return own, [config_record(subject, None)]

    return plan


# -- modes -----------------------------------------------------------------------------------
def plan_set_mode(subject: str | None, body: Any, *, force: bool = False) -> Plan[str]:
    """Set the mode from {"mode": M}; 42204 if invalid. Entering IMPORT while the subject (or, for
    the global mode, any subject) has live versions needs `force`, as in Confluent (42205)."""
    raw = body.get("mode") if isinstance(body, dict) else None
    try:
        mode = normalize_mode(raw)
    except InvalidMode:
        raise ApiError.invalid_mode(raw) from None

    def plan(state: RegistryState) -> tuple[str, list[Record]]:
        if mode == IMPORT and mode_in_force(state, subject) != IMPORT and not force:
            existing = state.subjects() if subject is None else state.versions(subject)
            if existing:
                where = "the registry" if subject is None else f"subject '{subject}'"
                raise ApiError.not_permitted(f"Cannot import since found existing subjects: {where} has schemas; "
                                             f"add ?force=true to enter IMPORT mode anyway")
        if state.mode(subject) == mode:
            return mode, []
        return mode, [mode_record(subject, mode)]

    return plan


def plan_delete_mode(subject: str | None) -> Plan[str]:
    """Unset a subject's mode (40401 if it has none) or reset the global one to READWRITE;
    answers the mode that was set."""

    def plan(state: RegistryState) -> tuple[str, list[Record]]:
        own = state.mode(subject)
        if subject is None:
            return own or DEFAULT_MODE, [mode_record(None, None)] if own else []
        if own is None:
            raise ApiError.subject_not_found(subject)
        return own, [mode_record(subject, None)]

    return plan
