"""Waiting out a schema registry outage, for code that must not give up on a record because the
registry is briefly down (CLI reads, the SDK's emit): the record is fine, its schema just cannot
be fetched now.

    wait = RegistryWait(notify=lambda text: click.echo(text, err=True))
    name, record = wait.call(lambda: serde.decode_typed(raw, topic=t, partition=p, offset=o))

`call` retries while the call raises a retriable RegistryError (unreachable, 408, 429, 5xx), with
full-jitter exponential backoff, telling `notify` once per outage that it is waiting and once that
the registry is back; any other error (a DecodeError for a 404/40403 schema id among them) is
raised at once. The registry client already retries each request for a few seconds; this is the
longer wait on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from app.registry.client import retry_registry_call
from app.registry.errors import RegistryUnavailable
from app.retry import Backoff

__all__ = ["RegistryWait"]

T = TypeVar("T")


class RegistryWait:
    """Retries calls while the schema registry is unavailable (see the module docstring).

    `deadline_s` bounds each call's wait (None: until the registry answers); past it the last
    RegistryError is raised. `initial_s`/`max_s` are the backoff ceilings between attempts.
    """

    def __init__(self, *, notify: Callable[[str], None] | None = None, deadline_s: float | None = None,
                 initial_s: float = 0.5, max_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.notify = notify
        self.deadline_s = deadline_s
        self.initial_s = initial_s
        self.max_s = max_s
        self._sleep = sleep
        #: the outage being waited out (None: the last call succeeded at once or after waiting)
        self.waiting_since: float | None = None
        #: retries made, over all calls
        self.retries = 0

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()`, retried while it raises a retriable RegistryError (up to `deadline_s`)."""
        result = retry_registry_call(fn, deadline_s=self.deadline_s, backoff=Backoff(self.initial_s, self.max_s),
                                     sleep=self._sleep, on_retry=self._on_retry)
        if self.waiting_since is not None:
            waited_s = time.monotonic() - self.waiting_since
            self.waiting_since = None
            self._tell(f"the schema registry answers again (waited {waited_s:.0f}s); continuing")
        return result

    def _on_retry(self, exc: BaseException, delay_s: float) -> None:
        self.retries += 1
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
            limit = "until it answers" if self.deadline_s is None else f"for up to {self.deadline_s:g}s"
            detail = exc.message if isinstance(exc, RegistryUnavailable) else str(exc)  # its code is not the registry's
            self._tell(f"the schema registry is unavailable ({detail}); the records are kept and retried {limit}")

    def _tell(self, text: str) -> None:
        if self.notify is not None:
            self.notify(text)
