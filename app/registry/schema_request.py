"""The schema a register, lookup or compatibility request carries, validated (pure).

What can be checked from the body alone is checked at once (JSON shape, schema type, Avro
validity of a schema without references, reference syntax, metadata and rule set); a schema with
references is parsed against the registry's state, where the referenced schemas are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.registry.compat import InvalidSchema, ParsedSchema, json_canonical, parse_schema
from app.registry.contracts import InvalidContract, validate_metadata, validate_rule_set
from app.registry.errors import ApiError
from app.registry.references import dependencies, parse_references, resolve_latest
from app.registry.state import Identity, Reference, RegistryState

__all__ = ["LATEST", "SUPPORTED_TYPES", "Resolved", "SchemaRequest", "parse_version"]

LATEST = "latest"
#: The schema types this registry stores (Confluent's also knows JSON and PROTOBUF).
SUPPORTED_TYPES = ("AVRO",)
_MAX_ID = _MAX_VERSION = 2**31 - 1


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


@dataclass(frozen=True)
class Resolved:
    """A request's schema parsed with its references resolved against the state."""

    parsed: ParsedSchema
    references: tuple[Reference, ...]
    schema_type: str

    def text(self, *, normalize: bool) -> str:
        """What to store: the schema as sent, or its normalized form."""
        return self.parsed.normalized if normalize else self.parsed.text

    def identity(self, *, normalize: bool) -> Identity:
        """Computed as state.identity_of computes it for the stored text."""
        if self.references:
            return self.schema_type, json_canonical(self.text(normalize=normalize)), self.references
        return self.schema_type, self.parsed.canonical, ()

    def identities(self) -> tuple[Identity, Identity]:
        """Both identities this schema may be stored under: as sent and normalized (they differ only
        for a schema with references, whose stored form is compared without resolving them)."""
        return self.identity(normalize=False), self.identity(normalize=True)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError.invalid_schema(f'"{name}" must be an integer, got {value!r}')
    return value


@dataclass(frozen=True)
class SchemaRequest:
    """{"schema", "schemaType"?, "references"?, "metadata"?, "ruleSet"?, "id"?, "version"?}, validated."""

    text: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()
    #: parsed at once when the schema has no references
    parsed: ParsedSchema | None = None
    metadata: dict[str, Any] | None = None
    rule_set: dict[str, Any] | None = None
    #: an explicit global id (import mode), or None
    schema_id: int | None = None
    #: an explicit version (import mode), or None
    version: int | None = None

    @classmethod
    def from_body(cls, body: Any) -> SchemaRequest:
        """Validate a request body; raise ApiError 42201 (42210 for a bad rule set)."""
        if not isinstance(body, dict):
            raise ApiError.invalid_schema('the request body must be a JSON object like {"schema": "..."}')
        schema_type = body.get("schemaType") or "AVRO"
        if not isinstance(schema_type, str) or schema_type.upper() not in SUPPORTED_TYPES:
            raise ApiError.invalid_schema(f"schemaType {schema_type!r} is not supported; this registry stores "
                                          f"{' and '.join(SUPPORTED_TYPES)} schemas only")
        if "schema" not in body:
            raise ApiError.invalid_schema('the request body has no "schema" field')
        text = body["schema"]
        references = parse_references(body.get("references"))
        try:
            metadata = validate_metadata(body.get("metadata"))
            rule_set = validate_rule_set(body.get("ruleSet"))
        except InvalidContract as exc:
            if exc.rule_set:
                raise ApiError.invalid_rule_set(str(exc)) from None
            raise ApiError.invalid_schema(str(exc)) from None
        schema_id, version = _optional_int(body, "id"), _optional_int(body, "version")
        if schema_id is not None and schema_id < 0:
            schema_id = None  # Confluent's clients send -1 for "no id"
        if schema_id is not None and not 1 <= schema_id <= _MAX_ID:
            raise ApiError.invalid_schema(f'"id" must be between 1 and 2^31-1, got {schema_id}')
        if version is not None and version in (0, -1):
            version = None  # 0 and -1 both mean "the next one"
        if version is not None and not 1 <= version <= _MAX_VERSION:
            raise ApiError.invalid_version(version)
        parsed = None
        if not references:
            try:
                parsed = parse_schema(text)
            except InvalidSchema as exc:
                raise ApiError.invalid_schema(exc.reason) from None
        elif not isinstance(text, str) or not text.strip():
            raise ApiError.invalid_schema("the schema must be a non-empty string of Avro JSON")
        return cls(text=str(text), schema_type=schema_type.upper(), references=references, parsed=parsed,
                   metadata=metadata, rule_set=rule_set, schema_id=schema_id, version=version)

    def resolve(self, state: RegistryState) -> Resolved:
        """Parse with the references resolved against `state`; ApiError 42201 if that fails."""
        if self.parsed is not None:
            return Resolved(self.parsed, (), self.schema_type)
        references = resolve_latest(state, self.references)
        try:
            parsed = parse_schema(self.text, dependencies(state, references))
        except InvalidSchema as exc:
            raise ApiError.invalid_schema(exc.reason) from None
        return Resolved(parsed, references, self.schema_type)
