"""Registering a schema under a subject, as a pure plan (Confluent's rules, in Confluent's order).

1. Already there: a live version of the subject with this schema (and, if asked for, this id
   and version, and the metadata and rule set it would get) is answered as is, in any mode.
2. Mode: READONLY / READONLY_OVERRIDE refuse (42205). An explicit "id" is kept in IMPORT mode,
   and outside it only when that id already is this schema's (in any subject); IMPORT mode takes
   only registrations that carry one (42205 otherwise): a requested id is never silently replaced.
3. Compatibility with the subject's versions, by its level (not in IMPORT mode: the source
   registry already checked).
4. Id: the requested one (IMPORT; 42205 if it holds a different schema), else the id this schema
   already has in any subject, else a new one above every id ever handed out.
5. Version: the requested one (IMPORT: any; otherwise it must be the next), else the next.
"""

from __future__ import annotations

from typing import Any

from app.registry.contracts import effective_contract
from app.registry.errors import ApiError
from app.registry.modes import IMPORT, is_read_only
from app.registry.operations import Plan, check_against, config_in_force, matches, mode_in_force
from app.registry.schema_request import Resolved, SchemaRequest
from app.registry.state import Record, RegistryState, SubjectVersion, max_id_record, schema_record, schema_tombstone

__all__ = ["plan_register"]


def plan_register(subject: str, request: SchemaRequest, *, normalize: bool = False) -> Plan[SubjectVersion]:
    """Register a schema under a subject: the existing version if already there, else a new one.
    `normalize` (or the subject's `normalize` config) stores the schema in its normalized form."""

    def plan(state: RegistryState) -> tuple[SubjectVersion, list[Record]]:
        config = config_in_force(state, subject)
        normalized = normalize or bool(config.get("normalize"))
        mode = mode_in_force(state, subject)
        resolved = request.resolve(state)
        live = state.versions(subject)
        if mode == IMPORT:
            metadata, rule_set = request.metadata, request.rule_set
        else:
            # Left out of the request, they carry over from the latest version, as in Confluent.
            previous = live[-1] if live else None
            metadata, rule_set = effective_contract(
                config,
                request.metadata if request.metadata is not None or previous is None else previous.metadata,
                request.rule_set if request.rule_set is not None or previous is None else previous.rule_set)
        existing = _already_there(state, live, resolved, request, metadata, rule_set)
        if existing is not None:
            return existing, []
        own_id = request.schema_id is not None and state.identity(request.schema_id) in resolved.identities()
        _check_mode(subject, mode, request, own_id=own_id)
        if mode != IMPORT:
            ok, reasons = check_against(state, subject, resolved.parsed, live)
            if not ok:
                raise ApiError.incompatible(subject, reasons)
        schema_id, text, records = _assign_id(state, resolved, request, normalized)
        version = _assign_version(state, subject, request, mode)
        sv = SubjectVersion(subject=subject, version=version, schema_id=schema_id, schema=text,
                            schema_type=resolved.schema_type, references=resolved.references,
                            metadata=metadata, rule_set=rule_set)
        # Like Confluent: soft-deleted earlier versions of the same schema go for good (unless a
        # schema references them: references may name soft-deleted versions).
        records += [schema_tombstone(subject, old.version) for old in state.versions(subject, deleted=True)
                    if old.deleted and old.schema_id == schema_id and old.version < version
                    and not state.referrers(subject, old.version)]
        return sv, [schema_record(sv), *records]

    return plan


def _already_there(state: RegistryState, live: list[SubjectVersion], resolved: Resolved, request: SchemaRequest,
                   metadata: Any, rule_set: Any) -> SubjectVersion | None:
    for sv in reversed(live):
        if not matches(state, sv, resolved):
            continue
        if (sv.metadata, sv.rule_set) != (metadata, rule_set):
            continue
        if request.schema_id is not None and request.schema_id != sv.schema_id:
            continue
        if request.version is not None and (request.schema_id is None or request.version != sv.version):
            continue
        return sv
    return None


def _check_mode(subject: str, mode: str, request: SchemaRequest, *, own_id: bool) -> None:
    if is_read_only(mode):
        raise ApiError.not_permitted(f"Subject '{subject}' is in read-only mode ({mode}); registrations are "
                                     f"refused until its mode (PUT /mode/{subject}) or the global one is changed")
    if request.schema_id is not None and mode != IMPORT and not own_id:
        raise ApiError.not_permitted(f"Subject '{subject}' is not in import mode: a registration that names its "
                                     f"\"id\" ({request.schema_id}) is accepted only in IMPORT mode "
                                     f"(PUT /mode/{subject} {{\"mode\": \"IMPORT\"}}) or when that id already "
                                     f"is this schema's; leave \"id\" out to get one")
    if request.schema_id is None and mode == IMPORT:
        raise ApiError.not_permitted(f"Subject '{subject}' is not in read-write mode: in IMPORT mode every "
                                     f"registration must carry the \"id\" to keep")


def _assign_id(state: RegistryState, resolved: Resolved, request: SchemaRequest,
               normalize: bool) -> tuple[int, str, list[Record]]:
    """(id, text to store, records raising MAX_ID if needed)."""
    if request.schema_id is not None:
        schema_id = request.schema_id
        held = state.identity(schema_id)
        if held is not None and held not in resolved.identities():
            raise ApiError.not_permitted(f"Overwrite new schema with id {schema_id} is not permitted: id "
                                         f"{schema_id} already holds a different schema")
    else:
        found = [i for i in map(state.id_for, resolved.identities()) if i is not None]
        schema_id = min(found) if found else state.max_id + 1
    # One id, one text: every version with this id serves the same bytes.
    text = state.schema_text(schema_id) or resolved.text(normalize=normalize)
    records = [max_id_record(schema_id)] if schema_id > state.max_id else []
    return schema_id, text, records


def _assign_version(state: RegistryState, subject: str, request: SchemaRequest, mode: str) -> int:
    every = state.versions(subject, deleted=True)
    following = (every[-1].version if every else 0) + 1
    if request.version is None:
        return following
    if mode != IMPORT and request.version != following:
        raise ApiError.invalid_schema(f"Version {request.version} is not one more than the previous version "
                                      f"({following - 1}) of subject '{subject}'; leave \"version\" out")
    return request.version
