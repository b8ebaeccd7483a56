"""Registry errors, on both sides of the wire, with Confluent Schema Registry error codes.

Server side: `ApiError` is what Vigil's registry answers (HTTP status, Confluent error code, a
message that says what to do); clients (confluent-kafka's among them) branch on `error_code`, so
the codes must be Confluent's.

Client side: `RegistryError` is what a registry answered (or `RegistryUnavailable`: that it could
not be reached). Like confluent-kafka's `SchemaRegistryError` it answers `is_retriable()` and
`is_not_found()`, so callers tell "this schema id does not exist" (a record framed with it is
undecodable for good) from "the registry is down or overloaded" (retry later; the record is fine).
This module imports nothing else so the serde can use it without an HTTP client.
"""

from __future__ import annotations

__all__ = ["SCHEMA_NOT_FOUND", "STORE_ERROR_PREFIX", "ApiError", "RegistryError", "RegistryUnavailable"]

#: Confluent's error code for "no schema with this id" (HTTP 404).
SCHEMA_NOT_FOUND = 40403
#: How a 50001 message starts (Confluent's wording).
STORE_ERROR_PREFIX = "Error in the backend data store: "
#: HTTP statuses worth retrying (timeout, rate limit); every 5xx is too.
_RETRIABLE_STATUSES = frozenset({408, 429})


class RegistryError(LookupError):
    """The registry answered with an error (HTTP status + Confluent error code + message)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"schema registry error {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    def is_retriable(self) -> bool:
        """A failure of the registry, not of the request: unreachable, 408, 429 or 5xx."""
        return self.status in _RETRIABLE_STATUSES or self.status >= 500

    def is_not_found(self) -> bool:
        """A definite 404: the subject, version or schema id does not exist."""
        return self.status == 404

    def is_schema_not_found(self) -> bool:
        """A definite "no schema with this id" (404 / 40403): the only error that makes a record
        framed with that id undecodable."""
        return self.status == 404 and self.error_code == SCHEMA_NOT_FOUND


class RegistryUnavailable(RegistryError):
    """The registry could not be reached (connection refused or reset, DNS, timeout): retriable."""

    def __init__(self, message: str) -> None:
        super().__init__(0, 50003, message)

    def is_retriable(self) -> bool:
        return True


class ApiError(Exception):
    """A request the registry refuses: HTTP status, Confluent error code, message for people."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, object]:
        """The JSON error body Confluent clients parse."""
        return {"error_code": self.error_code, "message": self.message}

    # -- 404 ---------------------------------------------------------------------------------
    @classmethod
    def subject_not_found(cls, subject: str) -> ApiError:
        """40401: no such subject (or only soft-deleted versions)."""
        return cls(404, 40401, f"Subject '{subject}' not found.")

    @classmethod
    def version_not_found(cls, subject: str, version: object) -> ApiError:
        """40402: the subject has no such version."""
        return cls(404, 40402, f"Version {version} not found for subject '{subject}'.")

    @classmethod
    def schema_not_found(cls, detail: str = "Schema not found") -> ApiError:
        """40403: no such schema id, or the schema is not under the subject."""
        return cls(404, 40403, detail)

    @classmethod
    def subject_soft_deleted(cls, subject: str) -> ApiError:
        """40404: the subject is already soft-deleted."""
        return cls(404, 40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently")

    @classmethod
    def subject_not_soft_deleted(cls, subject: str) -> ApiError:
        """40405: a permanent delete needs a soft delete first."""
        return cls(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted "
                               f"(delete it without permanent=true first)")

    @classmethod
    def version_not_soft_deleted(cls, subject: str, version: int) -> ApiError:
        """40407: a permanent delete of a version needs a soft delete first."""
        return cls(404, 40407, f"Subject '{subject}' Version {version} was not deleted first before being "
                               f"permanently deleted (delete it without permanent=true first)")

    @classmethod
    def subject_level_config_not_set(cls, subject: str) -> ApiError:
        """40408: the subject has no compatibility level of its own."""
        return cls(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured "
                               f"(add ?defaultToGlobal=true to get the global level)")

    @classmethod
    def subject_level_mode_not_set(cls, subject: str) -> ApiError:
        """40409: the subject has no mode of its own."""
        return cls(404, 40409, f"Subject '{subject}' does not have subject-level mode configured "
                               f"(add ?defaultToGlobal=true to get the global mode)")

    # -- 409 / 422 ---------------------------------------------------------------------------
    @classmethod
    def incompatible(cls, subject: str, reasons: list[str]) -> ApiError:
        """409: the schema breaks the subject's compatibility level; lists the reasons."""
        details = "; ".join(reasons) or "no details"
        return cls(409, 409, f"Schema being registered is incompatible with an earlier schema for subject "
                             f"'{subject}', details: {details}")

    @classmethod
    def invalid_schema(cls, reason: str) -> ApiError:
        """42201: not a valid (Avro) schema."""
        return cls(422, 42201, f"Invalid schema: {reason}")

    @classmethod
    def invalid_version(cls, version: object) -> ApiError:
        """42202: not a version number or "latest"."""
        return cls(422, 42202, f"The specified version '{version}' is not a valid version id. Allowed values "
                               f"are between [1, 2^31-1] and the string \"latest\"")

    @classmethod
    def invalid_level(cls, message: str) -> ApiError:
        """42203: not a compatibility level."""
        return cls(422, 42203, message)

    @classmethod
    def invalid_mode(cls, value: object) -> ApiError:
        """42204: not a mode."""
        return cls(422, 42204, f"Invalid mode {value!r}. Valid values are READWRITE, READONLY, READONLY_OVERRIDE "
                               f"and IMPORT")

    @classmethod
    def not_permitted(cls, message: str) -> ApiError:
        """42205: the operation is not permitted (read-only or import mode, an id already taken)."""
        return cls(422, 42205, message)

    @classmethod
    def reference_exists(cls, message: str) -> ApiError:
        """42206: other schemas still reference what is being deleted."""
        return cls(422, 42206, message)

    @classmethod
    def invalid_rule_set(cls, message: str) -> ApiError:
        """42210: not a rule set."""
        return cls(422, 42210, f"Invalid rule set: {message}")

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        """400: the request itself is malformed (not JSON, bad query parameter)."""
        return cls(400, 400, message)

    # -- 500 ---------------------------------------------------------------------------------
    @classmethod
    def store_error(cls, message: str) -> ApiError:
        """50001: Kafka (the backend store) failed."""
        return cls(500, 50001, f"{STORE_ERROR_PREFIX}{message}")

    @classmethod
    def timeout(cls, message: str) -> ApiError:
        """50002: the store did not answer in time."""
        return cls(500, 50002, f"Operation timed out: {message}")
