"""Registry modes (Confluent's): which writes a subject accepts (pure: no Kafka, no HTTP).

READWRITE accepts ordinary registrations; READONLY and READONLY_OVERRIDE refuse every write;
IMPORT accepts only registrations that bring their own id (migration and replication tools keep
the ids of the registry they copy from). A subject without a mode of its own follows the global
mode, and a global READONLY_OVERRIDE overrides every subject's own mode.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MODE", "IMPORT", "MODES", "READONLY", "READONLY_OVERRIDE", "READWRITE", "InvalidMode",
           "effective_mode", "is_read_only", "normalize_mode"]

READWRITE, READONLY, READONLY_OVERRIDE, IMPORT = "READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"
#: Every mode, in the order Confluent's error message lists them.
MODES = (READWRITE, READONLY, READONLY_OVERRIDE, IMPORT)
#: The mode of a registry nobody has set one on.
DEFAULT_MODE = READWRITE


class InvalidMode(ValueError):
    """Not one of the four modes."""

    def __init__(self, value: object) -> None:
        super().__init__(f"invalid mode {value!r}; valid modes are " + ", ".join(MODES))
        self.value = value


def normalize_mode(value: object) -> str:
    """The canonical (upper-case) name of a mode; raises InvalidMode."""
    if isinstance(value, str) and value.strip().upper() in MODES:
        return value.strip().upper()
    raise InvalidMode(value)


def effective_mode(global_mode: str | None, subject_mode: str | None) -> str:
    """The mode in force for a subject with its own mode `subject_mode` (None: none of its own)."""
    if global_mode == READONLY_OVERRIDE:
        return READONLY_OVERRIDE
    return subject_mode or global_mode or DEFAULT_MODE


def is_read_only(mode: str) -> bool:
    """Does `mode` refuse every write?"""
    return mode in (READONLY, READONLY_OVERRIDE)
