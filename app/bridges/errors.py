"""The one error every bridge parser raises: which field of the input is wrong, and why."""

from __future__ import annotations

from typing import Any

__all__ = ["ParseError"]


class ParseError(ValueError):
    """Input from another tool cannot be turned into events.

    `field` names the offending part the way its sender would look for it: a JSON path
    (`events[2].metrics.load1`), a header (`X-Hub-Signature-256`), or a syslog part (`pri`).
    `index` is the item's position when the input is a batch, so a response can point at it.
    `kind` is a short fixed label for counters ("invalid", "not_utf8"); never free text.
    """

    def __init__(self, field: str, reason: str, *, index: int | None = None, kind: str = "invalid") -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.index = index
        self.kind = kind

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body shape used by the HTTP bridge."""
        body: dict[str, Any] = {"error": self.reason, "field": self.field}
        if self.index is not None:
            body["index"] = self.index
        return body
