"""Which Kafka clients a test session left open, and where they were made.

A confluent-kafka client keeps connecting to its brokers, and librdkafka prints every refused
connection to stderr, until it is closed (consumers) or its last reference goes (producers and
admin clients have no close(); a delivery callback librdkafka still holds counts as a reference).
A client left open when its broker stops prints such lines to the end of the process, after
pytest's summary. `tracking()` records where each client made through app.bus.clients comes from;
`fail_if_open` fails with those sites (and what still holds each client) when some are still open.
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import CellType, FrameType
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

import app.bus.clients

__all__ = ["fail_if_open", "open_clients", "tracking"]

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_KINDS = ((Producer, "producer"), (Consumer, "consumer"), (AdminClient, "admin client"))
_reported: set[int] = set()  # ids of the clients fail_if_open reported (C classes take no attributes)


@dataclass(frozen=True)
class _Origin:
    """Where a client was made: its brokers, the test running then, and the repository's frames."""

    bootstrap: str
    test: str
    frames: tuple[str, ...]


def _ours(filename: str) -> bool:
    """A frame of the repository's code (not this module's, the factories' or the virtualenv's)."""
    return (filename.startswith(_REPO) and filename != os.path.abspath(__file__) and "site-packages" not in filename
            and not filename.endswith(os.path.join("app", "bus", "clients.py")))


def _origin(conf: dict[str, Any]) -> _Origin:
    frames = tuple(f"{frame.filename.removeprefix(_REPO)}:{frame.lineno} in {frame.name}"
                   for frame in traceback.extract_stack() if _ours(frame.filename))
    return _Origin(str(conf.get("bootstrap.servers", "?")), os.environ.get("PYTEST_CURRENT_TEST", "(no test)"),
                   frames[-6:])


# confluent-kafka's classes take the configuration dict as their one positional argument.
class _TrackedProducer(Producer):
    def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(conf, **kwargs)
        self.vigil_origin = _origin(conf)


class _TrackedConsumer(Consumer):
    def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(conf, **kwargs)
        self.vigil_origin = _origin(conf)


class _TrackedAdminClient(AdminClient):
    def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(conf, **kwargs)
        self.vigil_origin = _origin(conf)


@contextmanager
def tracking() -> Iterator[None]:
    """While open, clients made by app.bus.clients (make_producer, make_consumer, make_admin)
    remember where they were made (they are subclasses of confluent-kafka's, nothing else changes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app.bus.clients, "Producer", _TrackedProducer)
        patch.setattr(app.bus.clients, "Consumer", _TrackedConsumer)
        patch.setattr(app.bus.clients, "AdminClient", _TrackedAdminClient)
        yield


def _is_open(client: Any) -> bool:
    if isinstance(client, Consumer):
        try:
            client.assignment()  # local; a closed consumer raises RuntimeError
        except RuntimeError:
            return False
    return True


def open_clients(*, bootstrap: str | None = None) -> list[Any]:
    """Every Kafka client still alive (after a full garbage collection), consumers closed excluded;
    with `bootstrap`, only tracked clients made for those brokers."""
    gc.collect()
    found = [obj for obj in gc.get_objects() if isinstance(obj, (Producer, Consumer, AdminClient))]
    found = [client for client in found if _is_open(client)]
    if bootstrap is not None:
        found = [c for c in found if getattr(c, "vigil_origin", None) and c.vigil_origin.bootstrap == bootstrap]
    return found


def _holders(client: Any, scanned: list[Any]) -> str:
    """What refers to the client: object types, and the functions of frames (a running thread)."""
    here = os.path.abspath(__file__)
    names = set()
    refs = gc.get_referrers(client)
    for ref in refs:
        if ref is scanned or (isinstance(ref, CellType) and all(r is refs for r in gc.get_referrers(ref))):
            continue  # the list scanned, or a variable of a function running now (this check's callers)
        code = ref.f_code if isinstance(ref, FrameType) else getattr(ref, "gi_code", None)
        if code is not None:  # a frame, or a generator's: a function that is running or suspended
            if code.co_filename != here:
                names.add(f"the frame of {code.co_name} ({code.co_filename.removeprefix(_REPO)})")
        else:
            names.add(type(ref).__name__)
    return ", ".join(sorted(names)) or "nothing Python can see"


def _describe(client: Any, scanned: list[Any]) -> str:
    kind = next(name for cls, name in _KINDS if isinstance(client, cls))
    origin: _Origin | None = getattr(client, "vigil_origin", None)
    if origin is None:
        return f"- a {kind} made outside app.bus.clients (site unknown); held by: {_holders(client, scanned)}"
    lines = [f"- a {kind} for {origin.bootstrap}, made during {origin.test}; held by: {_holders(client, scanned)}"]
    lines += [f"      {frame}" for frame in origin.frames]
    return "\n".join(lines)


def fail_if_open(when: str, *, bootstrap: str | None = None) -> None:
    """Fail (pytest.fail) naming where each client still open was made and what holds it; each
    client is reported once (a later check does not repeat it)."""
    found = [client for client in open_clients(bootstrap=bootstrap) if id(client) not in _reported]
    if not found:
        return
    lines = []
    for client in found:
        _reported.add(id(client))
        lines.append(_describe(client, found))
    del client  # not a holder to report
    report = "\n".join(lines)
    pytest.fail(f"{len(found)} Kafka client(s) still open {when}: close consumers; drop the last reference to "
                f"producers and admin clients (flush first: a pending delivery callback is one)\n{report}",
                pytrace=False)

