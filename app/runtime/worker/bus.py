"""Whether Kafka is reachable, and Kafka calls retried while it is not.

The worker learns that Kafka is unreachable from its clients' error callbacks (served by poll and
consume on the worker's thread) and from its own calls that fail transiently; it learns that Kafka
is back from anything that shows progress. A client's fatal error is kept for the worker to make
that client anew; while one is kept, nothing is retried (no retry can help a dead client): the
failure goes to the worker, which makes the client anew.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from app.bus.faults import error_of, is_fatal, is_transient
from app.retry import Backoff, RetryGaveUp, retry_call

__all__ = ["SHUTDOWN_RETRY_S", "BusState", "KafkaRetry"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: While shutting down, how long a Kafka call is retried before the worker gives up on it.
SHUTDOWN_RETRY_S = 30.0


class BusState:
    """Kafka's reachability as the worker sees it, and its clients' fatal errors."""

    def __init__(self) -> None:
        self.down_since_s: float | None = None
        self.reason = ""
        #: a fatal error of the producer / of the consumer: the client must be made anew
        self.producer_fatal: KafkaError | None = None
        self.consumer_fatal: KafkaError | None = None

    def on_producer_error(self, err: KafkaError) -> None:
        """The producer's error_cb."""
        if is_fatal(err):
            self.producer_fatal = err
            log.error("Kafka producer fatal error: %s", err.str())
        else:
            self._on_error(err)

    def on_consumer_error(self, err: KafkaError) -> None:
        """The consumer's error_cb."""
        if is_fatal(err):
            self.consumer_failed(err)
        else:
            self._on_error(err)

    def consumer_failed(self, err: KafkaError) -> None:
        """The consumer reported a fatal error (error_cb, a consumed error, a call that failed): the
        worker makes a new one before its next turn."""
        if self.consumer_fatal is None:
            log.error("Kafka consumer fatal error: %s", err.str())
            self.consumer_fatal = err

    @property
    def fatal(self) -> KafkaError | None:
        """A client's fatal error not handled yet (the consumer's first)."""
        return self.consumer_fatal or self.producer_fatal

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.unreachable(err.str())
        else:
            log.debug("Kafka client error: %s", err.str())

    def unreachable(self, reason: str) -> None:
        """Kafka did not answer (a client's report, or a call that failed transiently)."""
        if self.down_since_s is None:
            log.warning("Kafka is unreachable (%s); retrying until it is back", reason)
            self.down_since_s = time.monotonic()
        self.reason = reason

    def up(self) -> None:
        """Kafka answered."""
        if self.down_since_s is not None:
            log.info("Kafka is reachable again after %.1f s", time.monotonic() - self.down_since_s)
            self.down_since_s = None

    @property
    def down(self) -> bool:
        return self.down_since_s is not None

    def problem(self) -> str | None:
        """The /healthz line while Kafka is unreachable."""
        if self.down_since_s is None:
            return None
        return f"Kafka unreachable for {time.monotonic() - self.down_since_s:.0f} s: {self.reason}"


class KafkaRetry:
    """Kafka calls retried while they fail transiently (forever while the worker runs, for
    SHUTDOWN_RETRY_S once it is stopping), marking Kafka unreachable meanwhile."""

    def __init__(self, bus: BusState, *, stopping: threading.Event, max_backoff_s: float,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.bus = bus
        self.stopping = stopping
        self.max_backoff_s = max_backoff_s
        self._on_retry = on_retry

    def __call__(self, call: Callable[[], T], what: str, *, also_codes: frozenset[int] = frozenset(),
                 retriable: Callable[[BaseException], bool] | None = None,
                 deadline_s: float | None = None) -> T:
        """`call()`, retried while it raises a transient KafkaException (or one with `also_codes`,
        or whatever `retriable` accepts); the last failure is raised once the deadline passed.
        Never retried: a fatal error, or any failure once a client's fatal error is kept (a dead
        consumer answers a seek with _STATE for ever): the worker makes the client anew."""
        def default_retriable(exc: BaseException) -> bool:
            err = error_of(exc)
            return is_transient(exc) or (err is not None and err.code() in also_codes)

        accepts = retriable or default_retriable

        def retry_it(exc: BaseException) -> bool:
            err = error_of(exc)
            if (err is not None and is_fatal(err)) or self.bus.fatal is not None:
                return False
            return accepts(exc)

        def note(exc: BaseException, delay_s: float) -> None:
            if self._on_retry is not None:
                self._on_retry()
            self.bus.unreachable(f"could not {what}: {exc}")
            log.warning("could not %s (%s); retrying in %.1f s", what, exc, delay_s)

        limit_s = SHUTDOWN_RETRY_S if self.stopping.is_set() else deadline_s
        try:
            result: T = retry_call(call, is_retriable=retry_it, deadline_s=limit_s,
                                     backoff=Backoff(initial_s=0.2, max_s=self.max_backoff_s), on_retry=note)
        except RetryGaveUp as exc:
            assert isinstance(exc.__cause__, KafkaException)
            raise exc.__cause__ from None
        # Not bus.up(): some calls succeed without a broker (an abort with nothing sent, a seek);
        # Kafka is "back" on evidence (records consumed, a metadata probe answered).
        return result
