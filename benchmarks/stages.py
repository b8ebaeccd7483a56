"""The stages a pipeline benchmark run adds beside the pipeline (the routes, the metric sinks), how
it tells when their work is done, and the forwarder: the same stages in a worker process of
their own (`vigil worker --stage routes --stage sinks --batch-scheduling --app-id ...`, as the
chart's `forwarder` workers run them), reading the events and windows in a consumer group of their own.

The forwarder is started and built before a run, waits for `go` (given as the pipeline's
worker starts, so neither gets a head start), and reports when it has routed every event (its
commit after the N-th) and its sinks have read and sent every window the pipeline published (the
parent tells it how many once the pipeline's work is committed): the run's time ends only then.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import log, read_proc_stat

from app.bus.clients import make_admin, make_consumer
from app.config import Settings
from app.runtime.gctune import STREAM_THRESHOLDS
from app.runtime.scheduling import BACKGROUND_NICENESS, run_as_batch_task
from app.runtime.stage import Stage
from app.runtime.worker import Guarantee, Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from app.sinks.stage import SinksStage

__all__ = ["ForwarderWorker", "SinksProgress", "commit_ends", "routed_copies", "routes_stage", "sink_counts",
           "sink_stages", "write_routes"]

#: seconds the forwarder may take to start (build its stages), and to exit once stopped
_FORWARDER_START_S = 120.0
#: how often the forwarder looks whether its part of the run is done
_FORWARDER_POLL_S = 0.005


def write_routes(s: Settings, rules_dir: Path, text: str) -> int:
    """Write the routes `text` to `rules_dir/routes` and create their destination topics; returns
    how many routes there are."""
    from app.routing.loader import load_routes, routes_dir

    routes_dir(rules_dir).mkdir(parents=True, exist_ok=True)
    (routes_dir(rules_dir) / "bench.yaml").write_text(text)
    routes = load_routes(rules_dir)
    if routes.errors:
        raise RuntimeError(f"benchmark routes invalid: {'; '.join(map(str, routes.errors))}")
    reconcile(make_admin(s), [TopicSpec(name=s.topic(r.to), partitions=6, replication=1, config={})
                              for r in routes], dry_run=False)
    return len(routes)


def routes_stage(s: Settings, rules_dir: Path) -> Stage:
    """The routes stage over the routes of `rules_dir` (see write_routes), as a worker builds it."""
    import dataclasses

    from app.routing.loader import routes_dir
    from app.routing.stage import RoutesConfig, RoutesStage

    config = dataclasses.replace(RoutesConfig.from_settings(s), directory=routes_dir(rules_dir))
    return RoutesStage(config).stage()


def sink_stages(s: Settings, settings_file: Path) -> tuple[SinksStage, Stage]:
    """The metric sinks stage built from `s` with the keys of `settings_file` (which enable them)."""
    import yaml

    from app.sinks.config import SinksConfig
    from app.sinks.stage import SinksStage

    overrides = yaml.safe_load(settings_file.read_text()) or {}
    sink_settings = Settings.model_validate({**s.model_dump(), **overrides})
    sinks = SinksStage(SinksConfig.from_settings(sink_settings), state_dir=Path(tempfile.mkdtemp()))
    enabled = [key for key, on in overrides.get("sinks", {}).items() if isinstance(on, dict) and on.get("enabled")]
    log(f"--with-sinks: {', '.join(enabled)} (senders: {sinks.config.senders})")
    return sinks, sinks.stage()


def commit_ends(s: Settings, group: str, topic: str) -> None:
    """Commit `topic`'s end offsets for consumer group `group` (which then starts there)."""
    from confluent_kafka import TopicPartition

    consumer = make_consumer(s, group)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in partitions]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@dataclass
class SinksProgress:
    """Whether the sinks agent has read every window the pipeline published and every push sink
    has sent (or dropped, counted) all of them: the sinks' work is in the measured time. `counts`
    gets the windows published and read when it was last asked, and `read_s`: from the first time
    it was asked (the pipeline's work was committed) until the sinks agent had read every window
    (the rest of a run's `settle_s` is the senders finishing)."""

    sinks: SinksStage
    counts: dict[str, float] = field(default_factory=dict)
    _asked_at: float = 0.0

    def settled(self, published: int, read: int) -> bool:
        """Whether the sinks are done, given the windows published and those the agent read."""
        self.counts.update(windows_published=published, windows_read=read)
        if not self._asked_at:
            self._asked_at = time.perf_counter()
        if read < published:
            return False
        self.counts.setdefault("read_s", round(time.perf_counter() - self._asked_at, 2))
        # The input has ended: the senders' last partial batches go now, not at their batch_delay
        # deadline (up to 1 s of waiting is latency, not work; their sending stays in the time).
        for sink in self.sinks.push:
            sink.send_held()
        return all(sink.idle() for sink in self.sinks.push)

    def in_worker(self) -> Callable[[Worker], bool]:
        """`settled` for a worker that runs the pipeline and the sinks agent both."""
        from app.pipeline.tracker import METRICS_TOPIC
        from app.sinks.stage import AGENT_NAME

        return lambda worker: self.settled(int(worker.metrics.events_out.labels(METRICS_TOPIC)._value.get()),
                                           worker.engine.stats[AGENT_NAME].events_in)

    def sender_pids(self) -> list[int]:
        """The sinks' sender process ids now (a child started again has another)."""
        return [pid for sender in self.sinks.push if (pid := getattr(sender, "pid", None)) is not None]


def sink_counts(sinks: SinksStage) -> dict[str, Any]:
    """Samples sent and dropped (by reason) per push sink, and the exposition's series."""
    out: dict[str, Any] = {}
    for metric in sinks.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name in ("vigil_sink_samples_sent_total", "vigil_sink_dropped_samples_total") and sample.value:
                label = sample.labels.get("sink", "") + (f":{sample.labels['reason']}" if "reason" in sample.labels
                                                          else "")
                out[f"{sample.name.removeprefix('vigil_sink_').removesuffix('_total')}[{label}]"] = int(sample.value)
    return out


def routed_copies(stages: Sequence[Stage]) -> int:
    """Copies the routes stage sent (its vigil_routed_total, all routes)."""
    return int(sum(sample.value for stage in stages for registry in stage.collectors for metric in registry.collect()
                   if metric.name == "vigil_routed" for sample in metric.samples if sample.name.endswith("_total")))


# -- the forwarder: routes and sinks in a process of their own ----------------------------------------
def _forwarder_main(settings: dict[str, Any], rules_dir: str, sinks_file: str | None, guarantee: str, events: int,
                    conn: Connection) -> None:
    """The forwarder process: build, report ready, wait for go, run until done (see the module)."""
    from app.routing.stage import AGENT_NAME as ROUTES_AGENT
    from app.sinks.stage import AGENT_NAME as SINKS_AGENT

    # as `vigil worker --batch-scheduling` (the chart's forwarders), before any thread starts
    run_as_batch_task(BACKGROUND_NICENESS)
    s = Settings.model_validate(settings)
    stages = [routes_stage(s, Path(rules_dir))]
    progress = None
    if sinks_file is not None:
        sinks, stage = sink_stages(s, Path(sinks_file))
        stages.append(stage)
        progress = SinksProgress(sinks)
    app_id = f"bench-fw-{uuid.uuid4().hex[:6]}"
    commit_ends(s, app_id, s.topic("metrics"))  # the windows of earlier runs are not this run's work
    worker = Worker(s, [a for stage in stages for a in stage.agents],
                    WorkerOptions(app_id=app_id, guarantee=Guarantee(guarantee), instance_id="bench-forwarder",
                                  gc_thresholds=STREAM_THRESHOLDS),
                    collectors=[c for stage in stages for c in stage.collectors])
    routes = worker.engine.stats[ROUTES_AGENT]
    conn.send(("ready",))
    if conn.recv()[0] != "go":  # stopped before the run began
        for stage in stages:
            stage.close()
        return
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        published: int | None = None
        commits_at_n = None
        while True:
            while conn.poll():
                message = conn.recv()
                if message[0] == "stop":
                    return
                published = message[1]
            if routes.events_in >= events and commits_at_n is None:
                commits_at_n = worker.metrics.commits._value.get()
            committed = commits_at_n is not None and worker.metrics.commits._value.get() > commits_at_n
            sinks_done = progress is None or (published is not None and progress.settled(
                published, worker.engine.stats[SINKS_AGENT].events_in))
            if committed and sinks_done:
                conn.send(("done", time.perf_counter(), {
                    "copies": routed_copies(stages), "windows": dict(progress.counts) if progress else {},
                    "sinks": sink_counts(progress.sinks) if progress else {}}))
                return
            time.sleep(_FORWARDER_POLL_S)
    finally:
        worker.stop()
        thread.join(120)
        for stage in stages:
            stage.close()
        conn.close()


class ForwarderWorker:
    """The routes (and sinks) in a worker process of their own, for one run (see the module)."""

    def __init__(self, s: Settings, rules_dir: Path, sinks_file: Path | None, guarantee: Guarantee,
                 events: int) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: this process runs librdkafka's threads
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_forwarder_main, name="vigil-forwarder", daemon=True, args=(
            s.model_dump(), str(rules_dir), None if sinks_file is None else str(sinks_file), guarantee.value,
            events, child))
        self.process.start()
        child.close()
        self.done_at: float | None = None
        self.details: dict[str, Any] = {}
        self._told = False
        if not self._conn.poll(_FORWARDER_START_S):
            self.close()
            raise TimeoutError("the forwarder did not start")
        self._conn.recv()  # ready

    def go(self) -> None:
        """Let the forwarder start consuming (as the pipeline's worker starts)."""
        self._conn.send(("go",))

    def settled(self, worker: Worker) -> bool:
        """Whether the forwarder has done its part of the run; asked once the pipeline's work is
        committed (its published windows are then final and are told to the forwarder)."""
        from app.pipeline.tracker import METRICS_TOPIC

        if not self._told:
            self._conn.send(("published", int(worker.metrics.events_out.labels(METRICS_TOPIC)._value.get())))
            self._told = True
        if self.done_at is None and self._conn.poll():
            _, self.done_at, self.details = self._conn.recv()
        if self.done_at is None and not self.process.is_alive():
            raise RuntimeError(f"the forwarder exited with {self.process.exitcode}")
        return self.done_at is not None

    def pids(self) -> list[int]:
        """The forwarder's process and its children (the sinks' sender process)."""
        me = self.process.pid
        if me is None:
            return []
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return [me]
        children = [pid for pid in pids if (stat := read_proc_stat(f"/proc/{pid}/stat")) is not None
                    and stat.parent_pid == me]
        return [me, *children]

    def close(self) -> None:
        """Stop the forwarder (when it has not finished) and wait for it to exit."""
        try:
            self._conn.send(("stop",))
        except OSError:
            pass  # it has finished and closed its end
        self.process.join(_FORWARDER_START_S)
        if self.process.is_alive():
            self.process.kill()
        self._conn.close()
