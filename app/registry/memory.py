"""An in-memory schema source for tests without a registry (ids assigned from 1)."""

from __future__ import annotations

import threading

from app.registry.errors import SCHEMA_NOT_FOUND, RegistryError

__all__ = ["InMemorySchemaSource"]


class InMemorySchemaSource:
    """Implements the serde's SchemaSource protocol; no compatibility checks."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._by_id: dict[int, str] = {}
        self._subjects: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema: str) -> int:
        with self._lock:
            schema_id = self._ids.get(schema)
            if schema_id is None:
                schema_id = self._ids[schema] = len(self._ids) + 1
                self._by_id[schema_id] = schema
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise RegistryError(404, SCHEMA_NOT_FOUND, f"Schema {schema_id} not found") from None

    def subjects(self) -> list[str]:
        return sorted(self._subjects)
