"""The push sinks in a child process (app.sinks.process): windows offered in the worker reach a
destination on loopback from the child, its counters show on the worker's SinkMetrics, a child
that dies is started again and the next windows arrive, the worker's side never waits (past its
bound windows are dropped and counted), and an error building the sinks is raised in the worker."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings
from app.sinks.config import SinksConfig, sinks_on
from app.sinks.metrics import MetricRelay, SinkMetrics
from app.sinks.process import SENDER_POLICY, UNSETTLED_WINDOWS_FACTOR, SenderProcess
from tests.conftest import wait_until
from tests.unit.sinks.conftest import window


class Lines:
    """A plaintext (Graphite) listener on loopback: every line received, by any connection."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r") as lines:
            for line in lines:
                with self._lock:
                    self.lines.append(line.strip())

    def subjects(self) -> set[str]:
        with self._lock:
            return {line.split(".")[1] for line in self.lines}

    def close(self) -> None:
        # shut down first: a thread blocked in accept() keeps a merely closed socket listening
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()


@pytest.fixture
def lines() -> Iterator[Lines]:
    listener = Lines()
    yield listener
    listener.close()


def _config(tmp_path: Path, port: int, **graphite: object) -> SinksConfig:
    settings = sinks_on(load_settings(state_dir=tmp_path),
                        graphite={"address": f"127.0.0.1:{port}", "batch_delay": "20ms", **graphite})
    return SinksConfig.from_settings(settings)


def _value(metrics: SinkMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_relay__counters_grow_by_what_grew_gauges_take_the_value_a_new_child_counts_from_zero() -> None:
    metrics = SinkMetrics()
    relay = MetricRelay(metrics)
    relay.apply([("vigil_sink_samples_sent", (("sink", "otlp"),), 9.0),
                 ("vigil_sink_buffered_bytes", (("sink", "otlp"),), 100.0)])
    relay.apply([("vigil_sink_samples_sent", (("sink", "otlp"),), 27.0),
                 ("vigil_sink_buffered_bytes", (("sink", "otlp"),), 0.0),
                 ("vigil_unknown", (), 5.0)])
    assert _value(metrics, "vigil_sink_samples_sent_total", sink="otlp") == 27
    assert _value(metrics, "vigil_sink_buffered_bytes", sink="otlp") == 0
    # an unchanged report adds nothing; a gauge back at an earlier value takes it
    relay.apply([("vigil_sink_samples_sent", (("sink", "otlp"),), 27.0),
                 ("vigil_sink_buffered_bytes", (("sink", "otlp"),), 0.0)])
    relay.apply([("vigil_sink_buffered_bytes", (("sink", "otlp"),), 100.0)])
    assert _value(metrics, "vigil_sink_samples_sent_total", sink="otlp") == 27
    assert _value(metrics, "vigil_sink_buffered_bytes", sink="otlp") == 100
    relay.restarted()
    relay.apply([("vigil_sink_samples_sent", (("sink", "otlp"),), 4.0)])
    assert _value(metrics, "vigil_sink_samples_sent_total", sink="otlp") == 31


def test_relay__reports_of_a_child_round_trip() -> None:
    child, worker = SinkMetrics(), SinkMetrics()
    child.sent.labels("graphite").inc(18)
    child.dropped.labels("graphite", "rejected").inc(9)
    child.buffered_bytes.labels("graphite").set(512)
    MetricRelay(worker).apply(child.relayed_values())
    assert _value(worker, "vigil_sink_samples_sent_total", sink="graphite") == 18
    assert _value(worker, "vigil_sink_dropped_samples_total", sink="graphite", reason="rejected") == 9
    assert _value(worker, "vigil_sink_buffered_bytes", sink="graphite") == 512


def test_windows_reach_the_destination_from_the_child_and_are_counted_here(tmp_path: Path, lines: Lines) -> None:
    metrics = SinkMetrics()
    sender = SenderProcess(_config(tmp_path, lines.port), state_dir=tmp_path, metrics=metrics)
    try:
        assert sender.pid is not None and sender.pid != os.getpid()
        sender.offer([window("web1", start_ms=int(time.time() * 1000) - 20_000), window("web2")])
        wait_until(lambda: lines.subjects() >= {"web1"}, timeout_s=30, message="web1's lines at the listener")
        wait_until(lambda: _value(metrics, "vigil_sink_samples_sent_total", sink="graphite") == 9, timeout_s=30,
                   message="the child's count of samples sent, here")
        # web2's window ended in 1970: older than max_age, dropped in the child and counted here
        wait_until(lambda: _value(metrics, "vigil_sink_dropped_samples_total", sink="graphite", reason="too_old") == 9,
                   timeout_s=30, message="the too-old window counted")
        sender.send_held()
        wait_until(sender.idle, timeout_s=30, message="the child idle")
    finally:
        sender.close()
    assert _value(metrics, "vigil_sink_samples_sent_total", sink="graphite") == 9


@pytest.mark.skipif(not hasattr(os, SENDER_POLICY), reason=f"no {SENDER_POLICY} on this OS")
def test_the_child_runs_as_a_batch_task_at_the_worker_s_niceness(tmp_path: Path, lines: Lines) -> None:
    sender = SenderProcess(_config(tmp_path, lines.port), state_dir=tmp_path, metrics=SinkMetrics())
    try:
        pid = sender.pid
        assert pid is not None
        # every thread of the child (its sinks' senders inherit the policy from its main thread)
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        assert len(threads) > 1
        assert {os.sched_getscheduler(tid) for tid in threads} == {getattr(os, SENDER_POLICY)}
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        sender.close()


def test_a_child_that_dies_is_started_again_and_later_windows_arrive(tmp_path: Path, lines: Lines) -> None:
    metrics = SinkMetrics()
    sender = SenderProcess(_config(tmp_path, lines.port), state_dir=tmp_path, metrics=metrics)
    now_ms = int(time.time() * 1000)
    try:
        sender.offer([window("before", start_ms=now_ms - 20_000)])
        wait_until(lambda: _value(metrics, "vigil_sink_samples_sent_total", sink="graphite") == 9, timeout_s=30,
                   message="the first window sent")
        first = sender.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: sender.pid != first and sender.idle(), timeout_s=60, message="a new child")
        sender.offer([window("after", start_ms=now_ms - 10_000)])
        wait_until(lambda: lines.subjects() >= {"before", "after"}, timeout_s=30, message="the later window")
        # the new child counts from zero; the count here goes on from the old one's
        wait_until(lambda: _value(metrics, "vigil_sink_samples_sent_total", sink="graphite") == 18, timeout_s=30,
                   message="both windows counted")
    finally:
        sender.close()


def test_windows_a_dead_child_held_in_memory_are_handed_to_the_next_one(tmp_path: Path, lines: Lines) -> None:
    """The child held the window in a partial batch (batch_delay 1h) and was SIGKILLed: the worker
    had kept it (not settled) and hands it to the new child, which sends it."""
    metrics = SinkMetrics()
    sender = SenderProcess(_config(tmp_path, lines.port, batch_delay="1h"), state_dir=tmp_path, metrics=metrics)
    now_ms = int(time.time() * 1000)
    try:
        sender.offer([window("held", start_ms=now_ms - 20_000), window("held2", start_ms=now_ms - 20_000)])
        wait_until(lambda: sender._report.taken == 1, timeout_s=30, message="the child took the windows")
        assert [seq for seq, _ in sender._unsettled] == [1]  # in the child's memory only
        first = sender.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: sender.pid != first, timeout_s=60, message="a new child")
        sender.offer([window("after", start_ms=now_ms - 10_000)])

        def all_sent() -> bool:
            sender.send_held()
            return sender.idle()

        wait_until(all_sent, timeout_s=30, message="the new child idle")
        wait_until(lambda: lines.subjects() == {"held", "held2", "after"}, timeout_s=30,
                   message="the windows the dead child held, and the later one")
        assert _value(metrics, "vigil_sink_windows_resent_total") == 2
        wait_until(lambda: not sender._unsettled, timeout_s=30, message="everything settled")
    finally:
        sender.close()
    subjects = [line.split(".")[1] for line in lines.lines]
    assert subjects.count("held") == subjects.count("after") == 9  # sent once: one line per aggregate


def test_children_killed_while_windows_flow__every_window_arrives(tmp_path: Path, lines: Lines) -> None:
    """Nothing is lost to a sender process's death, wherever the windows were (outbox, pipe, the
    child's queue or batch): at least once."""
    sender = SenderProcess(_config(tmp_path, lines.port, batch_delay="50ms", batch_windows=7),
                           state_dir=tmp_path, metrics=SinkMetrics())
    now_ms = int(time.time() * 1000)
    subjects = [f"s{i}" for i in range(120)]
    try:
        for n, subject in enumerate(subjects):
            sender.offer([window(subject, start_ms=now_ms - 20_000)])
            if n in (40, 80):
                pid = sender.pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: sender.pid != pid, timeout_s=60, message="a new child")  # noqa: B023
        wait_until(lambda: lines.subjects() >= set(subjects), timeout_s=60, message="every window at least once")
    finally:
        sender.close()


def test_what_the_worker_keeps_for_a_new_child_is_bounded__the_oldest_go_first(tmp_path: Path, lines: Lines) -> None:
    """A child whose sink holds its windows (a long batch_delay stands for a destination slow to
    answer) settles nothing; the worker keeps at most UNSETTLED_WINDOWS_FACTOR x queue_windows."""
    sender = SenderProcess(_config(tmp_path, lines.port, batch_delay="1h", queue_windows=2), state_dir=tmp_path,
                           metrics=SinkMetrics())
    now_ms = int(time.time() * 1000)
    try:
        for n in range(1, 9):
            sender.offer([window(f"w{n}", start_ms=now_ms - 20_000)])
            wait_until(lambda: sender._report.taken == n, timeout_s=30, message=f"the child took message {n}")  # noqa: B023
        assert [seq for seq, _ in sender._unsettled] == [5, 6, 7, 8]
        assert sender._unsettled_windows == UNSETTLED_WINDOWS_FACTOR * 2
    finally:
        sender.close()


def test_windows_sent_are_settled__the_worker_keeps_nothing(tmp_path: Path, lines: Lines) -> None:
    sender = SenderProcess(_config(tmp_path, lines.port), state_dir=tmp_path, metrics=SinkMetrics())
    now_ms = int(time.time() * 1000)
    try:
        for i in range(5):
            sender.offer([window(f"w{i}", start_ms=now_ms - 20_000)])
        wait_until(lambda: lines.subjects() == {f"w{i}" for i in range(5)}, timeout_s=30, message="all sent")
        wait_until(lambda: sender._report.settled == 5 and not sender._unsettled, timeout_s=30,
                   message="the child reports them settled; the worker lets them go")
    finally:
        sender.close()


def test_the_worker_side_never_waits__past_its_bound_windows_are_dropped_and_counted(tmp_path: Path,
                                                                                     lines: Lines) -> None:
    metrics = SinkMetrics()
    sender = SenderProcess(_config(tmp_path, lines.port, queue_windows=2), state_dir=tmp_path, metrics=metrics)
    try:
        now_ms = int(time.time() * 1000)
        sender.offer([window(f"w{i}", start_ms=now_ms - 20_000) for i in range(5)])
        assert _value(metrics, "vigil_sink_dropped_samples_total", sink="graphite", reason="queue_full") == 3 * 9
        wait_until(lambda: lines.subjects() == {"w0", "w1"}, timeout_s=30, message="the two that fit")
    finally:
        sender.close()


def test_an_error_building_the_sinks_is_raised_here(tmp_path: Path) -> None:
    settings = sinks_on(load_settings(state_dir=tmp_path), remote_write={"url": "http://127.0.0.1:9/api/v1/write"})
    config = SinksConfig.from_settings(settings)
    with pytest.raises(ConfigError, match="username is not"):
        SenderProcess(config, state_dir=tmp_path, metrics=SinkMetrics(),
                      environ={"VIGIL_SINK_REMOTE_WRITE_PASSWORD": "pw"})


def test_asking_for_held_batches_again_and_again_leaves_idle_be(tmp_path: Path, lines: Lines) -> None:
    """A caller polling `send_held(); idle()` (as a benchmark waiting for the sinks does) sees idle."""
    sender = SenderProcess(_config(tmp_path, lines.port, batch_delay="1h"), state_dir=tmp_path,
                           metrics=SinkMetrics())
    try:
        sender.offer([window("held", start_ms=int(time.time() * 1000) - 20_000)])

        def polled() -> bool:
            sender.send_held()
            return sender.idle()

        wait_until(polled, timeout_s=30, message="idle while polled")
        wait_until(lambda: lines.subjects() == {"held"}, timeout_s=30, message="the held batch at the listener")
    finally:
        sender.close()


def test_a_child_whose_worker_went_away_keeps_what_it_held_on_disk_for_the_next(tmp_path: Path,
                                                                                 lines: Lines) -> None:
    """End of its input (the worker died: its end of the pipe closed) stops the child; the windows it
    held in memory go to its disk buffer, and the next sender process on the state_dir sends them."""
    config = _config(tmp_path, lines.port, batch_delay="1h")
    first = SenderProcess(config, state_dir=tmp_path, metrics=SinkMetrics())
    first.offer([window("kept", start_ms=int(time.time() * 1000) - 20_000)])
    wait_until(lambda: first._report.taken == 1, timeout_s=30, message="the child took the window")
    proc = first._proc
    assert proc is not None and proc.stdin is not None
    with first._cond:
        first._closing = True  # as if the worker were gone: nothing starts another child
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert lines.subjects() == set()
    assert list((tmp_path / "sinks" / "graphite").glob("*.batch"))
    first.close()
    assert not first._feeder.is_alive() and not first._supervisor.is_alive()
    second = SenderProcess(config, state_dir=tmp_path, metrics=SinkMetrics())
    try:
        wait_until(lambda: lines.subjects() == {"kept"}, timeout_s=30, message="the buffered window sent")
    finally:
        second.close()


def test_a_new_sender_process_shows_what_its_disk_buffers_hold_at_once(tmp_path: Path, lines: Lines) -> None:
    """As a sink in a thread does from its construction: no report to wait for."""
    config = _config(tmp_path, lines.port, batch_delay="1h")
    first = SenderProcess(config, state_dir=tmp_path, metrics=SinkMetrics())
    first.offer([window("kept", start_ms=int(time.time() * 1000) - 20_000)])
    wait_until(lambda: first._report.taken == 1, timeout_s=30, message="the child took the window")
    first.close()  # what it held goes to its disk buffer
    # the next one sends to a port bound but not listening (refused): it keeps the batch
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        metrics = SinkMetrics()
        second = SenderProcess(_config(tmp_path, nobody.getsockname()[1], batch_delay="1h"), state_dir=tmp_path,
                               metrics=metrics)
        try:
            assert _value(metrics, "vigil_sink_buffered_bytes", sink="graphite") > 0
        finally:
            second.close()
