"""Registering and checking .avsc files against a registry (record-name subject strategy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.model.schemas import SchemaFile, load_schema_dir, load_schema_file, record_name_subject
from app.registry.client import CompatibilityReport, RegistryClient, RegistryError

__all__ = ["SchemaRegistration", "check_schema", "collect_schema_files", "register_schemas"]


@dataclass(frozen=True)
class SchemaRegistration:
    fullname: str
    subject: str
    schema_id: int | None
    error: str | None = None


def collect_schema_files(paths: list[Path]) -> list[SchemaFile]:
    """Schema files from files and folders (folders are searched recursively for *.avsc)."""
    found: dict[str, SchemaFile] = {}
    for path in paths:
        items = load_schema_dir(path).values() if path.is_dir() else [load_schema_file(path)]
        for schema in items:
            found[schema.fullname] = schema
    return list(found.values())


def register_schemas(client: RegistryClient, schemas: list[SchemaFile]) -> list[SchemaRegistration]:
    """Register each schema under its record-name subject; an incompatible one carries the reason."""
    out = []
    for schema in schemas:
        subject = record_name_subject(schema.fullname)
        try:
            out.append(SchemaRegistration(schema.fullname, subject, client.register(subject, schema.text)))
        except RegistryError as exc:
            reason = exc.message
            if exc.error_code == 409 or exc.status == 409:
                try:
                    report = client.check_compatibility(subject, schema.text)
                    reason = "; ".join(report.messages) or reason
                except RegistryError:
                    pass
            out.append(SchemaRegistration(schema.fullname, subject, None, f"{exc.error_code}: {reason}"))
    return out


def check_schema(client: RegistryClient, schema: SchemaFile) -> CompatibilityReport:
    """Compatibility of a schema with the registered versions its subject's level names, as
    registration would check it (compatible if none yet)."""
    subject = record_name_subject(schema.fullname)
    try:
        return client.check_compatibility(subject, schema.text)
    except RegistryError as exc:
        if exc.error_code in (40401, 40402):
            return CompatibilityReport(True, [f"subject {subject} has no versions yet"])
        raise
