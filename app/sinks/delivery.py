"""Delivery shared by every push sink (remote-write, Graphite, OTLP): the pipeline hands closed
windows over without waiting, a sender thread batches, encodes and sends them, and what the
destination cannot take now waits on disk and is retried with backoff.

- `offer()` (the sinks stage, on the worker's thread) only appends to a bounded in-memory queue;
  windows that do not fit are dropped and counted (queue_full). Nothing the destination does can
  slow the pipeline down: no lock is held across I/O, no call waits for the sender. It wakes the
  sender only when that sender has something to do now (`must_wake`): a sender holding a partial
  batch wakes at its deadline anyway, and a wake per agent batch cost the worker's thread the GIL
  hand-overs of three threads.
- The sender thread makes a batch of at most `batch_windows` windows, or whatever it has
  `batch_delay` after a batch's first window, encodes it once (the sink's encoder) and sends it
  (the sink's transport).
- A retriable failure (connection refused, timeout, 5xx, 429) puts the encoded batch in the
  on-disk buffer (app.sinks.buffer) and later batches go behind it, in order; the oldest buffered
  batch is sent again after a full-jitter exponential backoff (app.retry.Backoff) until the
  destination takes it, then the buffer drains. A refusal for good (another 4xx) drops the batch
  (counted: rejected): sending it again would be refused again.
- Stopping writes what is still in memory to the buffer (if one is configured): the next start
  sends it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.retry import Backoff
from app.sinks.buffer import claim_buffer
from app.sinks.config import PushConfig
from app.sinks.metrics import DROP_REASONS, SinkMetrics
from app.sinks.types import Encoder, SendFailed, Transport
from app.sinks.windows import ClosedWindow

__all__ = ["PushSink", "must_wake"]

log = logging.getLogger(__name__)

#: Buffered batches sent per pass of the sender, so draining a long backlog still takes new windows
#: off the queue in between.
_DRAIN_PER_PASS = 16
#: The sender wakes at least this often (to notice a stop even if a notify were missed).
_MAX_WAIT_S = 1.0


def must_wake(*, stopping: bool, holding: int, queued: int, batch_windows: int) -> bool:
    """Whether offering windows must wake the sender: it is stopping, or it holds no partial batch
    (`holding` 0: it is not waiting for a batch deadline, so it would not look at the queue until
    its idle wait ends), or the windows it holds and those queued make a full batch."""
    return stopping or holding == 0 or holding + queued >= batch_windows


class PushSink:
    """One push sink's queue, sender thread and buffer. `start()` starts the sender; `close()`
    stops it (what is still in memory goes to the buffer) and releases the buffer."""

    def __init__(self, name: str, *, encoder: Encoder, transport: Transport, config: PushConfig,
                 buffer_dir: Path, metrics: SinkMetrics, monotonic: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 backoff: Backoff | None = None) -> None:
        self.name = name
        self.encoder = encoder
        self.transport = transport
        self.config = config
        self.metrics = metrics
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._backoff = backoff or Backoff(initial_s=config.retry_initial_ms / 1000, max_s=config.retry_max_ms / 1000)
        self._sent = metrics.sent.labels(name)
        self._failures = metrics.failures.labels(name)
        self._retries = metrics.retries.labels(name)
        self._buffered = metrics.buffered_bytes.labels(name)
        self._dropped = {reason: metrics.dropped.labels(name, reason) for reason in DROP_REASONS}
        self.buffer = claim_buffer(buffer_dir, max_bytes=config.buffer_max_bytes, on_drop=self._drop)
        self._buffered.set(self.buffer.bytes)
        self._cond = threading.Condition()
        self._incoming: list[ClosedWindow] = []
        self._stopping = False
        #: send_held() asked for the partial batch to go now (cleared by the pass that sends it)
        self._send_held = False
        self._pending: list[ClosedWindow] = []
        #: windows of the sender's partial batch, as of its last pass (read by offer, under the lock)
        self._holding = 0
        #: the sender is in a pass (what it took is neither pending nor sent yet)
        self._stepping = False
        self._first_at = 0.0
        #: when the oldest buffered batch may be sent again (monotonic s)
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        #: windows that entered the queue, and those that left memory since (sent, put in the disk
        #: buffer, or dropped and counted); in the order they entered, so a window offered when
        #: windows_accepted became n is settled once windows_settled >= n (app.sinks.process
        #: resends to a new sender process only what its dead predecessor had not settled)
        self.windows_accepted = 0
        self.windows_settled = 0

    # -- the pipeline's side ----------------------------------------------------------------------
    def offer(self, windows: list[ClosedWindow]) -> None:
        """Hand closed windows to the sender; never waits. Windows older than max_age and those
        that do not fit in the queue are dropped and counted."""
        oldest_end_ms = self._wall_ms() - self.config.max_age_ms
        fresh = [w for w in windows if w.end_ms >= oldest_end_ms]
        if len(fresh) != len(windows):
            self._drop("too_old", sum(w.sample_count for w in windows if w.end_ms < oldest_end_ms))
        if not fresh:
            return
        with self._cond:
            room = self.config.queue_windows - len(self._incoming)
            if room < len(fresh):
                self._drop("queue_full", sum(w.sample_count for w in fresh[max(room, 0):]))
                fresh = fresh[:max(room, 0)]
            if fresh:
                self._incoming += fresh
                self.windows_accepted += len(fresh)
                if must_wake(stopping=self._stopping, holding=self._holding, queued=len(self._incoming),
                             batch_windows=self.config.batch_windows):
                    self._cond.notify()

    def send_held(self) -> None:
        """Send the partial batch the sender holds now instead of at its `batch_delay` deadline
        (e.g. when the input has ended and nothing more will fill it); never waits."""
        with self._cond:
            self._send_held = True
            self._cond.notify()

    def idle(self) -> bool:
        """Nothing waits to be sent: no window in memory, no batch in the disk buffer."""
        with self._cond:
            return not (self._stepping or self._incoming or self._pending or len(self.buffer))

    # -- the sender ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the sender (what is in memory goes to the buffer) and release the buffer."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(self.config.timeout_ms / 1000 + 10)
        else:
            self.step(stopping=True)
        self.transport.close()
        self.buffer.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._incoming and not self._stopping and not self._send_held:
                    self._cond.wait(self._wait_s())
                stopping = self._stopping
            try:
                self.step(stopping=stopping)
            except Exception:  # a bug here must not end deliveries for good
                log.exception("sink %s: sender step failed", self.name)
                time.sleep(_MAX_WAIT_S)
            if stopping:
                return

    def _wait_s(self) -> float:
        now = self._monotonic()
        deadlines = []
        if self._pending:
            deadlines.append(self._first_at + self.config.batch_delay_ms / 1000)
        if len(self.buffer):
            deadlines.append(self._retry_at)
        if not deadlines:
            return _MAX_WAIT_S
        return min(_MAX_WAIT_S, max(0.0, min(deadlines) - now))

    def step(self, *, stopping: bool = False) -> None:
        """One pass of the sender: take what was offered, send full (or due) batches, send
        buffered batches if their retry is due. With `stopping`, what is left goes to the buffer."""
        with self._cond:
            taken, self._incoming = self._incoming, []
            send_held, self._send_held = self._send_held, False
            self._stepping = True
        try:
            self._step(taken, stopping, send_held)
        finally:
            with self._cond:
                self._stepping = False
                self._holding = len(self._pending)

    def _step(self, taken: list[ClosedWindow], stopping: bool, send_held: bool = False) -> None:
        now = self._monotonic()
        if taken:
            if not self._pending:
                self._first_at = now
            self._pending += taken
        size = self.config.batch_windows
        while len(self._pending) >= size:
            batch, self._pending = self._pending[:size], self._pending[size:]
            self._first_at = now
            self._flush(batch, stopping=stopping)
        if self._pending and (stopping or send_held or now >= self._first_at + self.config.batch_delay_ms / 1000):
            batch, self._pending = self._pending, []
            self._flush(batch, stopping=stopping)
        if not stopping and len(self.buffer) and self._monotonic() >= self._retry_at:
            self._drain()
        self._buffered.set(self.buffer.bytes)

    def _flush(self, windows: list[ClosedWindow], *, stopping: bool) -> None:
        try:
            self._send_or_buffer(windows, stopping=stopping)
        finally:
            self.windows_settled += len(windows)

    def _send_or_buffer(self, windows: list[ClosedWindow], *, stopping: bool) -> None:
        payload = self.encoder.encode(windows)
        if payload.samples == 0:
            return
        if len(self.buffer) or stopping:  # behind what waits already (order), or no time to send
            self.buffer.append(payload)
            return
        try:
            self.transport.send(payload.body)
        except SendFailed as exc:
            self._failed(exc, payload.samples)
            if exc.retriable:
                self.buffer.append(payload)
        else:
            self._sent.inc(payload.samples)

    def _drain(self) -> None:
        for _ in range(_DRAIN_PER_PASS):
            payload = self.buffer.oldest()
            if payload is None:
                return
            self._retries.inc()
            try:
                self.transport.send(payload.body)
            except SendFailed as exc:
                self._failed(exc, payload.samples)
                if exc.retriable:
                    return
                self.buffer.pop_oldest()
            else:
                self._sent.inc(payload.samples)
                self.buffer.pop_oldest()
                self._backoff.reset()

    def _failed(self, exc: SendFailed, samples: int) -> None:
        self._failures.inc()
        if exc.retriable:
            delay_s = self._backoff.next_delay_s()
            self._retry_at = self._monotonic() + delay_s
            if self._backoff.attempt <= 3 or self._backoff.attempt % 100 == 0:
                log.warning("sink %s: %s; %d sample(s) kept on disk, retrying in %.1f s (failure %d in a row)",
                            self.name, exc, samples, delay_s, self._backoff.attempt)
        else:
            self._drop("rejected", samples)
            log.warning("sink %s: %s; %d sample(s) dropped (the destination refuses them for good)",
                        self.name, exc, samples)

    def _drop(self, reason: str, samples: int) -> None:
        if samples:
            self._dropped[reason].inc(samples)
