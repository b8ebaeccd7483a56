"""The registry's state, folded from the records of its compacted topic (pure: no Kafka here).

Every fact is one record whose key names it, so the state is a function of "latest value per key"
alone; that is exactly what log compaction keeps, so a compacted topic folds to the same state.
Keys and values are JSON, in the spirit of Confluent's `_schemas` topic:

    {"keytype":"SCHEMA","subject":S,"version":V} -> {"subject","version","id","schema","schemaType","deleted"
                                                     [,"references","metadata","ruleSet"]}
                                                    (null value = version permanently deleted)
    {"keytype":"CONFIG","subject":S|null}        -> {"compatibilityLevel"?: L, "normalize"?: B, ...}
                                                    (the config fields that are set; null = unset)
    {"keytype":"MODE","subject":S|null}          -> {"mode": M}  (null = unset)
    {"keytype":"MAX_ID"}                         -> {"id": N}

MAX_ID exists because permanent deletes tombstone schema records and compaction eventually drops
tombstones: without it the highest id could vanish and be handed out again for a different schema,
while clients cache id -> schema forever.

Records written before references, metadata, config fields and modes existed are the same
records without those fields, so a topic with old data folds as before. Keys this version does
not know (a newer version's) are logged, counted and skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.registry.compat import InvalidSchema, json_canonical, normalize_level, parse_schema
from app.registry.modes import normalize_mode

__all__ = [
    "Identity",
    "Record",
    "Reference",
    "RegistryState",
    "SubjectVersion",
    "config_record",
    "decode_key",
    "identity_of",
    "max_id_record",
    "mode_record",
    "schema_record",
    "schema_tombstone",
]

log = logging.getLogger(__name__)

#: One record to append to the topic: (key bytes, value bytes or None for a tombstone).
Record = tuple[bytes, bytes | None]

_SCHEMA, _CONFIG, _MODE, _MAX_ID = "SCHEMA", "CONFIG", "MODE", "MAX_ID"
_KEYTYPES = (_SCHEMA, _CONFIG, _MODE, _MAX_ID)
#: The config field holding the compatibility level (the others are stored as given).
LEVEL_FIELD = "compatibilityLevel"


@dataclass(frozen=True, order=True)
class Reference:
    """A schema reference: the named type `name` is defined by `subject` version `version`."""

    name: str
    subject: str
    version: int

    def body(self) -> dict[str, Any]:
        """The JSON form Confluent uses."""
        return {"name": self.name, "subject": self.subject, "version": self.version}


#: What makes two registrations "the same schema" (one global id): type, canonical form, references.
Identity = tuple[str, str, tuple[Reference, ...]]


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject: which global schema id it is and whether it is soft-deleted."""

    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str = "AVRO"
    deleted: bool = False
    references: tuple[Reference, ...] = ()
    #: Confluent data-contract fields, stored and returned as given (None: not set).
    metadata: dict[str, Any] | None = None
    rule_set: dict[str, Any] | None = None


def identity_of(schema_type: str, text: str, references: tuple[Reference, ...]) -> Identity:
    """The identity of stored schema text; a request's identity must be computed the same way
    (operations does it from the parsed request, which is where `parse_schema` comes in)."""
    if references:
        return schema_type, json_canonical(text), references
    try:
        return schema_type, parse_schema(text).canonical, ()
    except InvalidSchema:
        return schema_type, text, ()  # written by some other tool; still served by id, matched verbatim


def _dumps(obj: Any) -> bytes:
    # Sorted and compact, so one logical key always has the same bytes (compaction needs that).
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def schema_record(sv: SubjectVersion) -> Record:
    """The record stating that `sv.subject` version `sv.version` is `sv`."""
    value: dict[str, Any] = {"subject": sv.subject, "version": sv.version, "id": sv.schema_id, "schema": sv.schema,
                             "schemaType": sv.schema_type, "deleted": sv.deleted}
    if sv.references:  # left out when empty: the same bytes as before references existed
        value["references"] = [ref.body() for ref in sv.references]
    if sv.metadata is not None:
        value["metadata"] = sv.metadata
    if sv.rule_set is not None:
        value["ruleSet"] = sv.rule_set
    return _dumps({"keytype": _SCHEMA, "subject": sv.subject, "version": sv.version}), _dumps(value)


def schema_tombstone(subject: str, version: int) -> Record:
    """The record that permanently deletes one subject version."""
    return _dumps({"keytype": _SCHEMA, "subject": subject, "version": version}), None


def config_record(subject: str | None, config: Mapping[str, Any] | str | None) -> Record:
    """Set the config of a subject (None: the global one): a level, or every field that is set;
    None or an empty mapping unsets it."""
    fields = {LEVEL_FIELD: config} if isinstance(config, str) else dict(config or {})
    value = _dumps(fields) if fields else None
    return _dumps({"keytype": _CONFIG, "subject": subject}), value


def mode_record(subject: str | None, mode: str | None) -> Record:
    """Set (or with mode None, unset) the mode of a subject, or the global one."""
    return _dumps({"keytype": _MODE, "subject": subject}), _dumps({"mode": mode}) if mode is not None else None


def max_id_record(schema_id: int) -> Record:
    """The record raising the highest schema id ever handed out."""
    return _dumps({"keytype": _MAX_ID}), _dumps({"id": schema_id})


def decode_key(key: bytes | None) -> dict[str, Any]:
    """Parse a record key; raises ValueError if it is not one of ours."""
    if key is None:
        raise ValueError("record has no key")
    obj = json.loads(key)
    if not isinstance(obj, dict) or obj.get("keytype") not in _KEYTYPES:
        raise ValueError(f"unknown key {key[:200]!r}")
    return obj


def _references(raw: Any) -> tuple[Reference, ...]:
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise ValueError("references is not a list")
    return tuple(Reference(name=str(r["name"]), subject=str(r["subject"]), version=int(r["version"])) for r in raw)


def _optional_object(value: Any, name: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ValueError(f"{name} is not a JSON object")


class RegistryState:
    """Subjects, versions, global ids, configs and modes; `apply` folds one record in."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, SubjectVersion]] = {}
        self._identity: dict[int, Identity] = {}
        self._id_of: dict[Identity, int] = {}
        self._uses: dict[int, set[tuple[str, int]]] = {}
        self._referrers: dict[tuple[str, int], set[tuple[str, int]]] = {}  # live versions referencing one
        self._configs: dict[str | None, dict[str, Any]] = {}
        self._modes: dict[str | None, str] = {}
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
                self._apply_config(k.get("subject"), v)
            elif k["keytype"] == _MODE:
                if v is None or v.get("mode") is None:
                    self._modes.pop(k.get("subject"), None)
                else:
                    self._modes[k.get("subject")] = normalize_mode(v["mode"])  # InvalidMode: skip
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

    def _apply_config(self, subject: str | None, v: dict[str, Any] | None) -> None:
        fields = {name: value for name, value in (v or {}).items() if value is not None}
        if LEVEL_FIELD in fields:
            fields[LEVEL_FIELD] = normalize_level(fields[LEVEL_FIELD])  # InvalidLevel: skip the record
        if fields:
            self._configs[subject] = fields
        else:
            self._configs.pop(subject, None)

    def _apply_schema(self, subject: str, version: int, v: dict[str, Any] | None) -> None:
        new = None
        if v is not None:
            new = SubjectVersion(subject=subject, version=version, schema_id=int(v["id"]), schema=str(v["schema"]),
                                 schema_type=str(v.get("schemaType") or "AVRO"), deleted=bool(v.get("deleted")),
                                 references=_references(v.get("references")),
                                 metadata=_optional_object(v.get("metadata"), "metadata"),
                                 rule_set=_optional_object(v.get("ruleSet"), "ruleSet"))
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
        if not sv.deleted:
            for ref in sv.references:
                self._referrers.setdefault((ref.subject, ref.version), set()).add((sv.subject, sv.version))
        self.max_id = max(self.max_id, sv.schema_id)
        if sv.schema_id in self._identity:
            return
        identity = identity_of(sv.schema_type, sv.schema, sv.references)
        self._identity[sv.schema_id] = identity
        # Ids agree across instances by construction; if imported data ever holds two ids for one
        # schema, the lowest wins so every instance picks the same one.
        self._id_of[identity] = min(self._id_of.get(identity, sv.schema_id), sv.schema_id)

    def _unindex(self, sv: SubjectVersion) -> None:
        if not sv.deleted:
            for ref in sv.references:
                referrers = self._referrers.get((ref.subject, ref.version), set())
                referrers.discard((sv.subject, sv.version))
                if not referrers:
                    self._referrers.pop((ref.subject, ref.version), None)
        uses = self._uses.get(sv.schema_id, set())
        uses.discard((sv.subject, sv.version))
        if uses:
            return
        self._uses.pop(sv.schema_id, None)
        identity = self._identity.pop(sv.schema_id)
        if self._id_of.get(identity) == sv.schema_id:
            del self._id_of[identity]
            # Another id may hold the same schema (imported data): let it take over.
            others = [i for i, other in self._identity.items() if other == identity]
            if others:
                self._id_of[identity] = min(others)

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
        found = self.by_id(schema_id)
        return found.schema if found is not None else None

    def schema_type(self, schema_id: int) -> str:
        """AVRO, JSON or PROTOBUF (only AVRO is ever written by Vigil's registry)."""
        found = self.by_id(schema_id)
        return found.schema_type if found is not None else "AVRO"

    def by_id(self, schema_id: int) -> SubjectVersion | None:
        """The version that stands for a global id (its text, type, references and metadata): the
        first by subject and version, so every instance picks the same one whatever the fold order.
        Vigil writes one text per id, so only the metadata can differ between its versions."""
        uses = self._uses.get(schema_id)
        if not uses:
            return None
        subject, version = min(uses)
        return self._versions[subject][version]

    def identity(self, schema_id: int) -> Identity | None:
        """What the schema with this id is, for comparing with a request."""
        return self._identity.get(schema_id)

    def id_for(self, identity: Identity) -> int | None:
        """The global id already given to this schema in any subject, if any."""
        return self._id_of.get(identity)

    def uses(self, schema_id: int, *, deleted: bool = False) -> list[SubjectVersion]:
        """Every subject version with this id, by subject then version."""
        found = [self._versions[s][v] for s, v in self._uses.get(schema_id, ())]
        return sorted((sv for sv in found if deleted or not sv.deleted), key=lambda sv: (sv.subject, sv.version))

    def referrers(self, subject: str, version: int) -> list[SubjectVersion]:
        """The live versions whose schemas reference `subject` version `version`."""
        found = [self._versions[s][v] for s, v in self._referrers.get((subject, version), ())]
        return sorted(found, key=lambda sv: (sv.subject, sv.version))

    def config(self, subject: str | None) -> dict[str, Any] | None:
        """The config fields set for a subject (None: the global ones), or None if none are."""
        found = self._configs.get(subject)
        return dict(found) if found is not None else None

    def level(self, subject: str | None) -> str | None:
        """The compatibility level set for a subject (None: the global one), or None if unset."""
        return self._configs.get(subject, {}).get(LEVEL_FIELD)

    def mode(self, subject: str | None) -> str | None:
        """The mode set for a subject (None: the global one), or None if unset."""
        return self._modes.get(subject)
