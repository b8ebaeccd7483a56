"""The push sinks in a child process of the worker (`sinks.senders: process`, the default).

Encoding a closed window for three destinations costs ~100 µs of CPU in the senders; in threads of
the worker that CPU competes with the pipeline for the worker's GIL (~2 µs per event at 0.02
windows per event, measured by benchmarks/pipeline.py --with-sinks). In a child process it runs
beside the pipeline instead, and the worker's side of a window is a tuple on a pipe.

- The worker (SenderProcess): `offer()` appends to a bounded outbox and returns (past the bound,
  windows are dropped and counted, queue_full, as a sink's own queue does); a feeder thread
  pickles what is waiting and writes it to the child's stdin. A supervisor thread reads the child's
  reports (on a pipe of their own: what the sinks' code prints cannot garble them) and applies its
  counters to the worker's (app.sinks.metrics.MetricRelay), so /metrics looks the same as with
  threads. A child that dies is started again: its disk buffers are locked by the process that
  holds them, so the new one takes them over and sends what they kept, and the windows the dead one
  had only in memory (or in the pipe) are handed to the new one again. The worker keeps every window
  it wrote until the child reports it settled in every sink (sent, in a disk buffer, or dropped and
  counted); so a child's death loses nothing, and a window the dead child had sent but not yet
  reported may reach a destination twice (at least once; counted: vigil_sink_windows_resent).
- The child (`python -m app.sinks.process FD`): builds the sinks from the settings it is sent
  (app.sinks.push, the same code as the threads), offers them what it reads, and reports every
  REPORT_S. End of its input (the worker stopped or died) stops it: what its sinks hold in memory
  goes to their disk buffers.

The child is a fresh interpreter (subprocess, not multiprocessing: nothing of the worker's main
module runs again in it, and no librdkafka thread is forked).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from app.logs import configure_logging
from app.runtime.scheduling import BATCH_POLICY, run_as_batch_task
from app.sinks.config import SinksConfig
from app.sinks.metrics import MetricRelay, MetricValue, SinkMetrics
from app.sinks.windows import ClosedWindow

__all__ = ["REPORT_S", "SENDER_POLICY", "UNSETTLED_WINDOWS_FACTOR", "SenderProcess", "main"]

log = logging.getLogger(__name__)

#: The child reports its counters and whether it is idle this often.
REPORT_S: Final = 0.1
#: How long the worker waits for a new child to build its sinks (import, buffers, credentials).
START_TIMEOUT_S: Final = 60.0
#: The worker keeps at most this many times `queue_windows` windows for a new child (a sink whose
#: request hangs holds back the settling of everything behind it); past it the oldest are no longer
#: kept: they are still in the child, but would be lost if it died.
UNSETTLED_WINDOWS_FACTOR: Final = 2
#: The child's scheduling policy (Linux): a batch task's wake-ups never preempt the task running on
#: that CPU, so the child's threads -- woken by every window handed over, every report and every
#: batch deadline -- take CPU when the worker's thread yields it or at the end of its time slice,
#: never in the middle of its work. Its niceness stays the worker's: the child does only the work
#: the windows bring (a few % of a CPU), and a lower share would only leave it behind the worker
#: until the worker pauses (its batches late, and in a benchmark its backlog after the last event).
#: Measured with benchmarks/pipeline.py (every sink, 23,654 windows per run, 2 vCPUs beside a Kafka
#: broker; one invocation of 2-4 pairs each), the throughput against the same runs without them:
#: sinks alone, niceness +10 only (the child's wake-ups preempted the worker mid-work: its thread used
#: 4-8 s more CPU for the same 1M events): 0.75x; niceness +10 as a batch task: 1.01x and 0.90x;
#: with the 10 routes too, niceness +10 as a batch task: 0.85x and 0.82x (0.1-1.7 s after the
#: pipeline's last commit before the child had sent everything); niceness 0 as a batch task: 0.89x
#: (0.1-0.7 s).
SENDER_POLICY: Final = BATCH_POLICY
#: A child that died is started again after this long (doubling up to RESTART_MAX_S while it keeps dying).
RESTART_S: Final = 1.0
RESTART_MAX_S: Final = 30.0

_LENGTH: Final = struct.Struct(">I")

#: what a window travels as: ClosedWindow's fields in order
_WindowTuple = tuple[str, str, str, int, int, int, tuple[tuple[str, float], ...]]


def _write_frame(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    # two writes, not `head + data`: a frame of a turn's windows is hundreds of KB, and a copy of
    # it is fresh memory the kernel zeroes (measured with perf: most of the feeder thread's time)
    out.write(_LENGTH.pack(len(data)))
    out.write(data)
    out.flush()


def _read_exact(source: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = source.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(source: IO[bytes]) -> Any | None:
    """The next object, or None at the end of the stream."""
    head = _read_exact(source, _LENGTH.size)
    if head is None:
        return None
    data = _read_exact(source, _LENGTH.unpack(head)[0])
    return None if data is None else pickle.loads(data)


@dataclass
class _Report:
    """The child's last word: the last message it has taken, whether its sinks had nothing waiting
    then, their counters, and up to which message its windows are settled."""

    taken: int = 0
    idle: bool = True
    values: list[MetricValue] = field(default_factory=list)
    #: every window of a message up to this seq is settled in every sink
    settled: int = 0


class SenderProcess:
    """The worker's side of the push sinks' child process (see the module doc). Raises what the
    child raised building the sinks (e.g. ConfigError for contradictory credentials)."""

    def __init__(self, config: SinksConfig, *, state_dir: Path, metrics: SinkMetrics,
                 environ: Mapping[str, str] | None = None) -> None:
        from app.sinks.push import enabled_push_sections

        sections = enabled_push_sections(config)
        self.names = tuple(name for name, _ in sections)
        self.max_windows = max(section.queue_windows for _, section in sections)
        self.stop_timeout_s = sum(section.timeout_ms / 1000 + 10 for _, section in sections) + 5
        self.metrics = metrics
        self._relay = MetricRelay(metrics)
        self._start_message = (config, str(state_dir), dict(environ) if environ is not None else None,
                               logging.getLogger().getEffectiveLevel())
        self._resent = metrics.windows_resent
        self._queue_full = [metrics.dropped.labels(name, "queue_full") for name in self.names]
        self._cond = threading.Condition()
        #: (seq, windows or None for "send what you hold") waiting for the feeder
        self._outbox: deque[tuple[int, list[ClosedWindow] | None]] = deque()
        self._outbox_windows = 0
        #: (seq, windows) written to the child and not yet settled there: handed again to the next
        #: child if this one dies
        self._unsettled: deque[tuple[int, list[ClosedWindow]]] = deque()
        self._unsettled_windows = 0
        self._unsettled_max = UNSETTLED_WINDOWS_FACTOR * self.max_windows
        #: the oldest unsettled windows had to be let go (logged once until the child catches up)
        self._unsettled_overflow = False
        self._seq = 0
        #: the last seq send_held() was asked at (-1: never)
        self._held_seq = -1
        self._report = _Report()
        self._closing = False
        #: the current child (the feeder writes to it; the supervisor replaces one that died)
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc = self._start_child(base_seq=0)
        self._feeder = threading.Thread(target=self._feed, name="sink-sender-feed", daemon=True)
        self._supervisor = threading.Thread(target=self._supervise, name="sink-sender-watch", daemon=True)
        self._feeder.start()
        self._supervisor.start()

    # -- the pipeline's side ------------------------------------------------------------------------
    def offer(self, windows: list[ClosedWindow]) -> None:
        """Hand closed windows to the child; never waits (past max_windows waiting, dropped: queue_full)."""
        with self._cond:
            room = self.max_windows - self._outbox_windows
            if room < len(windows):
                lost = windows[max(room, 0):]
                windows = windows[:max(room, 0)]
                samples = sum(w.sample_count for w in lost)
                for counter in self._queue_full:
                    counter.inc(samples)
            if windows:
                self._seq += 1
                self._outbox.append((self._seq, windows))
                self._outbox_windows += len(windows)
                self._cond.notify()

    def send_held(self) -> None:
        """Have every sink send its partial batch now; never waits."""
        with self._cond:
            # once per windows offered: asking again and again (a poll) leaves idle() be
            if self._held_seq != self._seq:
                self._held_seq = self._seq
                self._outbox.append((self._seq, None))
                self._cond.notify()

    def idle(self) -> bool:
        """The child has taken everything offered and its sinks had nothing waiting when it said so."""
        with self._cond:
            return not self._outbox and self._report.taken == self._seq and self._report.idle

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started)."""
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the child (its sinks put what they hold in their disk buffers) and take its last counts."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._feeder.join(self.stop_timeout_s)
        self._supervisor.join(self.stop_timeout_s)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.error("sinks: the sender process did not stop within %.0f s; killing it", self.stop_timeout_s)
            proc.kill()
            proc.wait()
        with self._cond:
            # a clean stop settles everything (the child buffers what it holds); these were with a
            # child that had died and not been replaced yet when the worker stopped
            lost = sum(len(w) for _, w in self._unsettled) + sum(len(w) for _, w in self._outbox if w is not None)
        if lost:
            log.error("sinks: %d window(s) were not sent or buffered: the sender process had stopped and "
                      "the worker stopped before another took them", lost)

    # -- the child --------------------------------------------------------------------------------
    def _start_child(self, *, base_seq: int) -> subprocess.Popen[bytes]:
        """Start a child that counts its messages from `base_seq` and wait until it has built its
        sinks (raises what it raised)."""
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the `app` package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "app.sinks.process", str(write_fd)],
                                    stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._reports = os.fdopen(read_fd, "rb")
        assert proc.stdin is not None
        _write_frame(proc.stdin, (*self._start_message, base_seq))
        first = self._read_report_with_deadline(proc)
        if isinstance(first, BaseException):
            proc.wait(10)
            self._reports.close()
            raise first
        # its counters as built (e.g. the bytes a disk buffer already holds), as threads show them at once
        self._relay.apply(_Report(*first).values)
        return proc

    def _read_report_with_deadline(self, proc: subprocess.Popen[bytes]) -> Any:
        result: list[Any] = []
        reader = threading.Thread(target=lambda: result.append(_read_frame(self._reports)), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not result or result[0] is None:
            proc.kill()
            proc.wait()
            return RuntimeError(f"sinks: the sender process did not start (exit code {proc.returncode}); "
                                "see its messages above")
        return result[0]

    def _feed(self) -> None:
        """Write what waits in the outbox to the current child, batched into one frame."""
        while True:
            with self._cond:
                while not self._outbox and not self._closing:
                    self._cond.wait()
                waiting = list(self._outbox)
                self._outbox.clear()
                self._outbox_windows = 0
                closing = self._closing
                proc = self._proc
                self._keep_unsettled(waiting)
            messages: list[tuple[int, list[_WindowTuple] | None]] = [(seq, None if windows is None else [
                (w.subject, w.name, w.metric, w.size_ms, w.start_ms, w.end_ms, w.values) for w in windows])
                for seq, windows in waiting]
            if messages and proc is not None and proc.stdin is not None:
                try:
                    _write_frame(proc.stdin, messages)
                except (BrokenPipeError, ValueError, OSError):
                    pass  # the child died: the supervisor starts another and hands these to it
            if closing:
                if proc is not None and proc.stdin is not None:
                    try:
                        proc.stdin.close()  # end of input: the child stops
                    except OSError:
                        pass
                return

    def _keep_unsettled(self, messages: list[tuple[int, list[ClosedWindow] | None]]) -> None:
        """Keep the windows of messages being written to the child until it reports them settled
        (under the lock), up to the bound: past it the oldest are let go (logged)."""
        for seq, windows in messages:
            if windows is not None:
                self._unsettled.append((seq, windows))
                self._unsettled_windows += len(windows)
        while self._unsettled_windows > self._unsettled_max and len(self._unsettled) > 1:
            self._unsettled_windows -= len(self._unsettled.popleft()[1])
            if not self._unsettled_overflow:
                self._unsettled_overflow = True
                log.warning("sinks: the sender process has not settled %d windows (a destination slow to answer?): "
                            "the oldest are no longer kept for a new sender process, should this one die",
                            self._unsettled_max)

    def _supervise(self) -> None:
        """Take the child's reports; start a new child when one dies (until closing)."""
        delay_s = RESTART_S
        while True:
            proc = self._proc
            while (frame := _read_frame(self._reports)) is not None:
                report = _Report(*frame)
                with self._cond:
                    self._report = report
                    while self._unsettled and self._unsettled[0][0] <= report.settled:
                        self._unsettled_windows -= len(self._unsettled.popleft()[1])
                    if not self._unsettled:
                        self._unsettled_overflow = False
                self._relay.apply(report.values)
                delay_s = RESTART_S
            self._reports.close()
            code = proc.wait() if proc is not None else None
            if self._closing:
                return
            log.error("sinks: the sender process exited (code %s); starting another (what it held on disk "
                      "is sent by the next one)", code)
            while True:
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, RESTART_MAX_S)
                if self._closing:
                    return
                try:
                    with self._cond:
                        base_seq = self._base_seq()
                    self._relay.restarted()
                    new = self._start_child(base_seq=base_seq)
                    self._hand_over(new, base_seq)
                    break
                except Exception as exc:
                    log.error("sinks: the sender process could not start again (next try in %.0f s): %s",
                              delay_s, exc)

    def _base_seq(self) -> int:
        """Where a new child's count starts: just before the first window it will be handed (not
        settled, or not written yet), so it never reports settled what it has not had. Call under
        the lock; until the new child takes over, only offers (with later seqs) change the answer."""
        first = [seq for seq, windows in (*self._unsettled, *self._outbox) if windows is not None]
        return min(first) - 1 if first else self._seq

    def _hand_over(self, proc: subprocess.Popen[bytes], base_seq: int) -> None:
        """Make `proc` the child the feeder writes to, with the windows its predecessor had not
        settled first in line. One step under the lock: the feeder writes either to the dead child
        (and what it wrote is among those handed over) or to this one, in order."""
        with self._cond:
            again = list(self._unsettled)
            self._unsettled.clear()
            self._unsettled_windows = 0
            self._outbox.extendleft(reversed(again))
            windows = sum(len(w) for _, w in again)
            self._outbox_windows += windows
            self._report = _Report(taken=base_seq, settled=base_seq)
            self._proc = proc
            self._cond.notify()
        if windows:
            self._resent.inc(windows)
            log.warning("sinks: %d window(s) the stopped sender process had not sent or buffered are handed "
                        "to the new one (a destination may receive some of them twice)", windows)


def _child(status_fd: int) -> int:
    """The child's main loop (see the module doc)."""
    from app.sinks.push import build_push_sinks

    source = sys.stdin.buffer
    start = _read_frame(source)
    if start is None:
        return 0
    config, state_dir, environ, level, base_seq = start
    # Ctrl-C in a terminal reaches the whole process group: the worker stops this process (end of
    # its input) once it has stopped taking windows, so what is in flight goes to the disk buffers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_as_batch_task()  # where the OS lacks or refuses it, the child runs as the worker does
    configure_logging(level)
    reports = os.fdopen(status_fd, "wb")
    metrics = SinkMetrics()
    try:
        sinks = build_push_sinks(config, state_dir=Path(state_dir), metrics=metrics, environ=environ)
    except BaseException as exc:
        _write_frame(reports, exc)
        return 1
    for sink in sinks:
        sink.start()
    taken = settled = base_seq
    #: (seq, each sink's windows_accepted after that message's windows were offered), oldest first
    offered: deque[tuple[int, tuple[int, ...]]] = deque()
    lock = threading.Lock()
    done = threading.Event()

    def report() -> None:
        nonlocal settled
        with lock:
            seen = taken  # read before asking the sinks: offered before `taken` moved on
            while offered and all(sink.windows_settled >= n for sink, n in zip(sinks, offered[0][1], strict=True)):
                settled = offered.popleft()[0]
            if not offered:
                settled = seen
            # a plain tuple: this module is __main__ here, so its classes would not unpickle in the worker
            _write_frame(reports, (seen, all(sink.idle() for sink in sinks), metrics.relayed_values(), settled))

    def reporter() -> None:
        while not done.wait(REPORT_S):
            report()

    report()  # ready
    thread = threading.Thread(target=reporter, name="sink-reports", daemon=True)
    thread.start()
    try:
        while (messages := _read_frame(source)) is not None:
            for seq, tuples in messages:
                if tuples is None:
                    for sink in sinks:
                        sink.send_held()
                    with lock:
                        taken = seq
                else:
                    windows = [ClosedWindow(*t) for t in tuples]
                    for sink in sinks:
                        sink.offer(windows)
                    with lock:
                        offered.append((seq, tuple(sink.windows_accepted for sink in sinks)))
                        taken = seq
    finally:
        done.set()
        thread.join()
        for sink in sinks:
            try:
                sink.close()
            except Exception:
                logging.getLogger(__name__).exception("sinks: closing %s failed", sink.name)
        report()
        reports.close()
    return 0


def main() -> None:
    """`python -m app.sinks.process FD`: the child, reporting on file descriptor FD."""
    sys.exit(_child(int(sys.argv[1])))


if __name__ == "__main__":
    main()
