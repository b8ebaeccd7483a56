"""What the parts of a push sink exchange: an encoded batch, the failure of a send, and the
encoder and transport interfaces each sink implements (app.sinks.delivery drives them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.sinks.windows import ClosedWindow

__all__ = ["Encoder", "Payload", "SendFailed", "Transport"]


@dataclass(frozen=True, slots=True)
class Payload:
    """An encoded batch, ready for the transport, and how many samples it carries."""

    body: bytes
    samples: int


class SendFailed(Exception):
    """A batch did not arrive; `retriable` says whether sending it again may work."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Encoder(Protocol):
    def encode(self, windows: list[ClosedWindow]) -> Payload:
        """One batch's request body (samples: one per aggregate of each window)."""
        ...


class Transport(Protocol):
    def send(self, body: bytes) -> None:
        """Deliver one encoded batch or raise SendFailed."""
        ...

    def close(self) -> None: ...
