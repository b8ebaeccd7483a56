"""Schema references (pure): a schema may use named types that other subjects' versions define.

A registration lists them as {"name", "subject", "version"}; the referenced versions must exist,
and their own references are followed too. The schema is parsed with every referenced type
known (deepest first), for validation and for compatibility checks alike.
"""

from __future__ import annotations

from typing import Any

from app.registry.compat import InvalidSchema, ParsedSchema, parse_schema
from app.registry.errors import ApiError
from app.registry.state import Reference, RegistryState, SubjectVersion

__all__ = ["LATEST_VERSION", "dependencies", "parse_references", "parse_stored", "resolve_latest"]

_MAX_VERSION = 2**31 - 1
#: A reference's version that means "the subject's latest" (resolved when the schema is registered).
LATEST_VERSION = -1


def parse_references(raw: Any) -> tuple[Reference, ...]:
    """The `references` of a request body, validated; 42201 if malformed. A version of -1 means
    the latest one (see resolve_latest)."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise ApiError.invalid_schema('"references" must be a list of {"name", "subject", "version"}')
    refs: list[Reference] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ApiError.invalid_schema(f'references[{i}] must be an object with "name", "subject", "version"')
        name, subject, version = item.get("name"), item.get("subject"), item.get("version")
        if not isinstance(name, str) or not name or not isinstance(subject, str) or not subject:
            raise ApiError.invalid_schema(f"references[{i}] needs a non-empty name and subject")
        if isinstance(version, bool) or not isinstance(version, int) or not (
                version == -1 or 1 <= version <= _MAX_VERSION):
            raise ApiError.invalid_schema(f"references[{i}] ({name}): version must be 1..2^31-1 or -1 (latest), "
                                          f"got {version!r}")
        refs.append(Reference(name=name, subject=subject, version=version))
    names = [r.name for r in refs]
    if len(set(names)) != len(names):
        raise ApiError.invalid_schema(f"references name a type twice: {names}")
    return tuple(refs)


def resolve_latest(state: RegistryState, references: tuple[Reference, ...]) -> tuple[Reference, ...]:
    """`references` with version -1 replaced by the subject's latest live version; 42201 if none."""
    resolved: list[Reference] = []
    for ref in references:
        if ref.version == LATEST_VERSION:
            live = state.versions(ref.subject)
            if not live:
                raise ApiError.invalid_schema(f"reference {ref.name!r}: subject '{ref.subject}' has no live version")
            ref = Reference(name=ref.name, subject=ref.subject, version=live[-1].version)
        resolved.append(ref)
    return tuple(resolved)


def dependencies(state: RegistryState, references: tuple[Reference, ...]) -> list[str]:
    """Texts of every schema `references` lead to, referenced before referencing; 42201 if one
    does not exist (soft-deleted versions count) or the references go round in a circle."""
    texts: list[str] = []
    done: set[tuple[str, int]] = set()

    def visit(ref: Reference, path: tuple[tuple[str, int], ...]) -> None:
        key = (ref.subject, ref.version)
        if key in path:
            chain = " -> ".join(f"{s} v{v}" for s, v in (*path, key))
            raise ApiError.invalid_schema(f"schema references go round in a circle: {chain}")
        if key in done:
            return
        sv = state.version(ref.subject, ref.version)
        if sv is None:
            raise ApiError.invalid_schema(f"reference {ref.name!r} points at subject '{ref.subject}' version "
                                          f"{ref.version}, which does not exist; register it first")
        if sv.schema_type != "AVRO":
            raise ApiError.invalid_schema(f"reference {ref.name!r} points at a {sv.schema_type} schema; only AVRO "
                                          f"schemas can be referenced")
        for inner in sv.references:
            visit(inner, (*path, key))
        done.add(key)
        texts.append(sv.schema)

    for ref in references:
        visit(ref, ())
    return texts


def parse_stored(state: RegistryState, sv: SubjectVersion) -> ParsedSchema:
    """A stored version parsed with its references resolved; InvalidSchema if it cannot be."""
    try:
        deps = dependencies(state, sv.references)
    except ApiError as exc:
        raise InvalidSchema(exc.message.removeprefix("Invalid schema: ")) from None
    return parse_schema(sv.schema, deps)
