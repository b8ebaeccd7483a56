"""The registry's state, folded from the records of its compacted topic (pure: no Kafka here).

Every fact is one record whose key names it, so the state is a function of "latest value per key"
alone; that is exactly what log compaction keeps, so a compacted topic folds to the same state.
Keys and values are JSON, in the spirit of Confluent's `_schemas` topic:

    {"keytype":"SCHEMA","subject":S,"version":V} -> {"subject","version","id","schema","schemaType","deleted"}
                                                    (null value = version permanently deleted)
    {"keytype":"CONFIG","subject":S|null}        -> {"compatibilityLevel": L}  (null = unset)
    {"keytype":"MAX_ID"}                         -> {"id": N}

MAX_ID exists because permanent deletes tombstone schema records and compaction eventually drops
tombstones: without it the highest id could vanish and be handed out again for a different schema,
while clients cache id -> schema forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.registry.compat import InvalidSchema, normalize_level, parse_schema

__all__ = [
    "Record",
    "RegistryState",
    "SubjectVersion",
    "config_record",
    "decode_key",
    "max_id_record",
    "schema_record",
    "schema_tombstone",
]

log = logging.getLogger(__name__)

#: One record to append to the topic: (key bytes, value bytes or None for a tombstone).
Record = tuple[bytes, bytes | None]

_SCHEMA, _CONFIG, _MAX_ID = "SCHEMA", "CONFIG", "MAX_ID"


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject: which global schema id it is and whether it is soft-deleted."""

    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str = "AVRO"
    deleted: bool = False


def _dumps(obj: Any) -> bytes:
    # Sorted and compact, so one logical key always has the same bytes (compaction needs that).
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def schema_record(sv: SubjectVersion) -> Record:
    """The record stating that `sv.subject` version `sv.version` is `sv`."""
    return (_dumps({"keytype": _SCHEMA, "subject": sv.subject, "version": sv.version}),
            _dumps({"subject": sv.subject, "version": sv.version, "id": sv.schema_id, "schema": sv.schema,
                    "schemaType": sv.schema_type, "deleted": sv.deleted}))


def schema_tombstone(subject: str, version: int) -> Record:
    """The record that permanently deletes one subject version."""
    return _dumps({"keytype": _SCHEMA, "subject": subject, "version": version}), None


def config_record(subject: str | None, level: str | None) -> Record:
    """Set (or with level None, unset) the compatibility level of a subject, or the global one."""
    value = _dumps({"compatibilityLevel": level}) if level is not None else None
    return _dumps({"keytype": _CONFIG, "subject": subject}), value


def max_id_record(schema_id: int) -> Record:
    """The record raising the highest schema id ever handed out."""
    return _dumps({"keytype": _MAX_ID}), _dumps({"id": schema_id})


def decode_key(key: bytes | None) -> dict[str, Any]:
    """Parse a record key; raises ValueError if it is not one of ours."""
    if key is None:
        raise ValueError("record has no key")
    obj = json.loads(key)
    if not isinstance(obj, dict) or obj.get("keytype") not in (_SCHEMA, _CONFIG, _MAX_ID):
        raise ValueError(f"unknown key {key[:200]!r}")
    return obj


class RegistryState:
    """Subjects, versions, global ids and configs; `apply` folds one record in."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, SubjectVersion]] = {}
        self._texts: dict[int, str] = {}
        self._types: dict[int, str] = {}
        self._canonical_of: dict[int, str] = {}
        self._id_of: dict[tuple[str, str], int] = {}  # (schema type, canonical form) -> id
        self._uses: dict[int, set[tuple[str, int]]] = {}
        self._configs: dict[str | None, str] = {}
        self.max_id = 0
        #: Records that could not be understood (skipped, never fatal).
        self.skipped = 0

    # -- folding -----------------------------------------------------------------------------
    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Fold one record in; a record we cannot understand is logged, counted and skipped."""
        try:
            k = decode_key(key)
            v = json.loads(value) if value is not None else None
            if v is not None and not isinstance(v, dict):
                raise ValueError("value is not a JSON object")
            if k["keytype"] == _SCHEMA:
                self._apply_schema(str(k["subject"]), int(k["version"]), v)
            elif k["keytype"] == _CONFIG:
                subject = k.get("subject")
                if v is None or v.get("compatibilityLevel") is None:
                    self._configs.pop(subject, None)
                else:
                    self._configs[subject] = normalize_level(v["compatibilityLevel"])  # InvalidLevel: skip
            else:
                self.max_id = max(self.max_id, int(v["id"])) if v else self.max_id
        except (ValueError, KeyError, TypeError) as exc:
            self.skipped += 1
            log.warning("skipping a registry record we cannot read (%s): key=%r", exc, (key or b"")[:200])
            return False
        return True

    def apply_all(self, records: Iterable[Record]) -> None:
        """Fold several records in order."""
        for key, value in records:
            self.apply(key, value)

    def _apply_schema(self, subject: str, version: int, v: dict[str, Any] | None) -> None:
        new = None
        if v is not None:
            new = SubjectVersion(subject=subject, version=version, schema_id=int(v["id"]), schema=str(v["schema"]),
                                 schema_type=str(v.get("schemaType") or "AVRO"), deleted=bool(v.get("deleted")))
        by_version = self._versions.setdefault(subject, {})
        old = by_version.pop(version, None)
        if old is not None:
            self._unindex(old)
        if new is not None:
            by_version[version] = new
            self._index(new)
        if not by_version:
            del self._versions[subject]

    def _index(self, sv: SubjectVersion) -> None:
        self._uses.setdefault(sv.schema_id, set()).add((sv.subject, sv.version))
        self.max_id = max(self.max_id, sv.schema_id)
        if sv.schema_id in self._texts:
            return
        self._texts[sv.schema_id] = sv.schema
        self._types[sv.schema_id] = sv.schema_type
        try:
            canonical = parse_schema(sv.schema).canonical
        except InvalidSchema:
            canonical = sv.schema  # written by some other tool; still served by id, matched verbatim
        self._canonical_of[sv.schema_id] = canonical
        key = (sv.schema_type, canonical)
        # Ids agree across instances by construction; if imported data ever holds two ids for one
        # schema, the lowest wins so every instance picks the same one.
        self._id_of[key] = min(self._id_of.get(key, sv.schema_id), sv.schema_id)

    def _unindex(self, sv: SubjectVersion) -> None:
        uses = self._uses.get(sv.schema_id, set())
        uses.discard((sv.subject, sv.version))
        if uses:
            return
        self._uses.pop(sv.schema_id, None)
        self._texts.pop(sv.schema_id, None)
        key = (self._types.pop(sv.schema_id, "AVRO"), self._canonical_of.pop(sv.schema_id, ""))
        if self._id_of.get(key) == sv.schema_id:
            del self._id_of[key]
            # Another id may hold the same schema (imported data): let it take over.
            others = [i for i, c in self._canonical_of.items() if c == key[1] and self._types.get(i) == key[0]]
            if others:
                self._id_of[key] = min(others)

    # -- queries -----------------------------------------------------------------------------
    def subjects(self, *, deleted: bool = False) -> list[str]:
        """Subjects with at least one version (live ones only unless `deleted`), sorted."""
        return sorted(s for s, vs in self._versions.items() if deleted or any(not v.deleted for v in vs.values()))

    def versions(self, subject: str, *, deleted: bool = False) -> list[SubjectVersion]:
        """Versions of a subject, oldest first (live ones only unless `deleted`)."""
        found = self._versions.get(subject, {})
        return [found[n] for n in sorted(found) if deleted or not found[n].deleted]

    def version(self, subject: str, version: int) -> SubjectVersion | None:
        """One version (soft-deleted or not), or None."""
        return self._versions.get(subject, {}).get(version)

    def schema_text(self, schema_id: int) -> str | None:
        """Schema text for a global id, or None if no version uses it any more."""
        return self._texts.get(schema_id)

    def schema_type(self, schema_id: int) -> str:
        """AVRO, JSON or PROTOBUF (only AVRO is ever written by Vigil's registry)."""
        return self._types.get(schema_id, "AVRO")

    def canonical_of(self, schema_id: int) -> str | None:
        """Canonical form of the schema with this id."""
        return self._canonical_of.get(schema_id)

    def id_for(self, schema_type: str, canonical: str) -> int | None:
        """The global id already given to this schema in any subject, if any."""
        return self._id_of.get((schema_type, canonical))

    def uses(self, schema_id: int, *, deleted: bool = False) -> list[SubjectVersion]:
        """Every subject version with this id, by subject then version."""
        found = [self._versions[s][v] for s, v in self._uses.get(schema_id, ())]
        return sorted((sv for sv in found if deleted or not sv.deleted), key=lambda sv: (sv.subject, sv.version))

    def level(self, subject: str | None) -> str | None:
        """The compatibility level set for a subject (None: the global one), or None if unset."""
        return self._configs.get(subject)
