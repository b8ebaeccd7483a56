"""Scaling out on the real Kafka: a restart moves nothing (static membership, cooperative
rebalancing, local state reused), a restore does not stop the other partitions, and damaged
changelogs (recreated, emptied, truncated, compacted under the store) are detected, reported with
the table and partition, and recovered from without hanging."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

import app.runtime.worker.restore as worker_restore
from app.bus.clients import make_admin, make_consumer, make_producer
from app.config import Settings
from app.model.events import Event
from app.runtime.testing import partition_for
from app.runtime.worker import Worker, WorkerOptions
from app.topics.admin import reconcile
from app.topics.spec import TopicSpec
from tests.conftest import free_port, wait_until
from tests.integration.runtime.kafka_helpers import (
    group_lag,
    produce_events,
    read_topic,
    spawn_worker,
    stop_worker,
    worker_thread,
)
from tests.integration.runtime.test_worker import PLUGIN, _sum_agents, make_events, reference_totals


def counter(metric: Any) -> float:
    """A prometheus counter's total over its labels."""
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


def events_on(partition: int, partitions: int, count: int, *, keys: int, start: int = 0) -> list[Event]:
    """`count` events over `keys` identities whose key hashes to `partition`."""
    subjects: list[str] = []
    i = 0
    while len(subjects) < keys:
        if partition_for(f"p{partition}-k{i}/m", partitions) == partition:
            subjects.append(f"p{partition}-k{i}")
        i += 1
    return [Event(subject=subjects[n % keys], name="m", time=1_000_000 + start + n, metrics={"x": 1.0})
            for n in range(count)]


def options(app_id: str, instance: str, **extra: Any) -> WorkerOptions:
    return WorkerOptions(app_id=app_id, instance_id=instance, commit_interval_ms=100, session_timeout_ms=30_000,
                         **extra)


def test_restart__a_static_member_gets_its_partitions_back_without_replaying_its_changelog(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    source, out = new_topic("src", partitions=4), new_topic("out", partitions=4)
    app_id = f"static-{uuid.uuid4().hex[:6]}"
    state_a = settings.model_copy(update={"state_dir": tmp_path / "a"})
    state_b = settings.model_copy(update={"state_dir": tmp_path / "b"})
    with worker_thread(state_a, _sum_agents(source, out)[0].agents(), options(app_id, "a")) as a:
        with worker_thread(state_b, _sum_agents(source, out)[0].agents(), options(app_id, "b")) as b:
            wait_until(lambda: len(a.engine.assigned()) == 2 and len(b.engine.assigned()) == 2, timeout_s=60,
                       message="two partitions each")
            produce_events(settings, source, [e for p in range(4) for e in events_on(p, 4, 50, keys=5)])
            wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=60, message="caught up")
            mine = set(b.engine.assigned())
        # b is gone (a static member leaves no gap in the group): a keeps only its own partitions
        given_up = counter(a.metrics.partitions_given_up)
        with worker_thread(state_b, _sum_agents(source, out)[0].agents(), options(app_id, "b")) as b2:
            wait_until(lambda: set(b2.engine.assigned()) == mine, timeout_s=60, message="b's partitions back to b")
            assert counter(b2.metrics.restored) == 0, "the local state was reused: no changelog record replayed"
            produce_events(settings, source, [e for p in range(4) for e in events_on(p, 4, 10, keys=5, start=50)])
            wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=60, message="caught up again")
        assert counter(a.metrics.partitions_given_up) == given_up, "a was not rebalanced during b's restart"
    totals = {v["key"]: v["total"] for v in _json(read_topic(settings, out, expect=240))}
    assert len(totals) == 20 and set(totals.values()) == {12.0}  # each key: 10 + 2 events, each counted once


def _json(msgs: list[Any]) -> list[dict[str, Any]]:
    import orjson

    return [orjson.loads(m.value()) for m in msgs]


def test_restore__the_other_partitions_are_processed_while_one_restores(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, out = new_topic("src", partitions=2), new_topic("out", partitions=2)
    app_id = f"restore-{uuid.uuid4().hex[:6]}"
    produce_events(settings, source, events_on(0, 2, 300, keys=300))  # 300 keys to restore on p0
    first = settings.model_copy(update={"state_dir": tmp_path / "first"})
    with worker_thread(first, _sum_agents(source, out)[0].agents(), options(app_id, "w")):
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=90, message="state built")
    # A new machine (no local state) restores p0; the test holds the restore until it has seen p1 work.
    gate = threading.Event()
    real_step = worker_restore.Restorer.step

    def held_step(self: worker_restore.Restorer, budget_s: float) -> Any:
        return real_step(self, budget_s) if gate.is_set() else []

    monkeypatch.setattr(worker_restore.Restorer, "step", held_step)
    fresh = settings.model_copy(update={"state_dir": tmp_path / "fresh"})
    with worker_thread(fresh, _sum_agents(source, out)[0].agents(), options(app_id, "w")) as w:
        wait_until(lambda: w.engine.assigned() == [(source, 1)] and w.restorer.restoring() == [(source, 0)],
                   timeout_s=60, message="p1 processing while p0 restores")
        ready, report = w.ready()
        assert not ready and [r["partition"] for r in report["restoring"]] == [f"{source}[0]"]
        assert report["restoring"][0]["records_left"] >= 300  # the sums and the agent's own (timers) table
        assert w.health()[0], "restoring is alive (liveness), only not ready"
        produce_events(settings, source, events_on(1, 2, 1, keys=1))
        wait_until(lambda: group_lag(settings, app_id, source) == 0 or w.engine.stats["summer"].events_in == 1,
                   timeout_s=60, message="p1's event processed")
        assert w.restorer.restoring() == [(source, 0)] and not w.ready()[0]
        gate.set()
        wait_until(lambda: w.ready()[0], timeout_s=120, message="p0 restored")
        assert sorted(w.engine.assigned()) == [(source, 0), (source, 1)]
        assert w.metrics.restored.labels("sums")._value.get() == 300


# -- damaged changelogs ----------------------------------------------------------------------------
class Damage:
    """A sum worker's state and changelog, to damage between runs."""

    def __init__(self, settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
        self.settings = settings
        self.source, self.out = new_topic("src", partitions=1), new_topic("out", partitions=1)
        self.app_id = f"dmg-{uuid.uuid4().hex[:6]}"
        self.changelog = settings.topic(f"{self.app_id}-sums-changelog")
        self.tmp_path = tmp_path
        self.sent = 0

    def run(self, state: str, events: int, **extra: Any) -> Worker:
        """A worker on state dir `state` processes `events` more events (then stops); returns it."""
        s = self.settings.model_copy(update={"state_dir": self.tmp_path / state})
        with worker_thread(s, _sum_agents(self.source, self.out)[0].agents(), options(self.app_id, "w", **extra)) as w:
            # ready with nothing assigned yet means nothing: wait for the partition, restored
            wait_until(lambda: w.ready()[0] and bool(w.ready()[1]["assigned"]), timeout_s=120,
                       message="assigned, restored and ready")
            if events:
                produce_events(self.settings, self.source, events_on(0, 1, events, keys=10, start=self.sent))
                self.sent += events
            wait_until(lambda: group_lag(self.settings, self.app_id, self.source) == 0, timeout_s=90,
                       message="caught up")
            wait_until(lambda: w.commit_count > 0, timeout_s=30, message="a commit")
        return w

    def watermarks(self) -> tuple[int, int]:
        consumer = make_consumer(self.settings, f"wm-{uuid.uuid4().hex[:6]}")
        try:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(self.changelog, 0), timeout=10)
            return int(lo), int(hi)
        finally:
            consumer.close()

    def delete_records_before(self, offset: int) -> None:
        """What retention does to a changelog someone gave `cleanup.policy: compact,delete` (Kafka
        refuses DeleteRecords on a compact-only topic; the worker sets compact back when it starts)."""
        admin = make_admin(self.settings)
        set_configs(admin, self.changelog, {"cleanup.policy": "compact,delete"})

        def deleted() -> bool:
            # the broker applies the new policy when it reads the metadata record, a moment after the
            # alter answered: until then it still refuses (POLICY_VIOLATION)
            try:
                for fut in admin.delete_records([TopicPartition(self.changelog, 0, offset)]).values():
                    fut.result()
            except KafkaException as e:
                if e.args[0].code() == KafkaError.POLICY_VIOLATION:
                    return False
                raise
            return True

        wait_until(deleted, timeout_s=30, message="the records deleted once the policy allows it")

    def recreate_changelog(self) -> None:
        admin = make_admin(self.settings)
        for fut in admin.delete_topics([self.changelog], operation_timeout=30).values():
            fut.result()
        spec = TopicSpec(name=self.changelog, partitions=1, replication=1, config={"cleanup.policy": "compact"})
        wait_until(lambda: self._create(spec), timeout_s=60, message="the changelog recreated")

    def _create(self, spec: TopicSpec) -> bool:
        try:
            reconcile(make_admin(self.settings), [spec], dry_run=False)
        except Exception:  # still being deleted
            return False
        try:
            return self.watermarks() == (0, 0)
        except KafkaException as e:  # created, but not in the broker's metadata yet
            if e.args[0].code() == KafkaError._UNKNOWN_PARTITION:
                return False
            raise


def test_damaged_changelog__recreated_under_the_store__rebuilt_from_it_and_reported(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    d = Damage(settings, new_topic, tmp_path)
    d.run("x", 100)
    d.recreate_changelog()  # the store's checkpoint now lies beyond the changelog's end
    w = d.run("x", 10)
    assert any(f"table sums[0] (changelog {d.changelog}[0])" in line and "recreated" in line for line in w.damaged)
    assert counter(w.metrics.changelog_damage) == 1


def test_damaged_changelog__emptied__a_new_worker_starts_empty_and_reports_it(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    d = Damage(settings, new_topic, tmp_path)
    d.run("x", 100)
    _, hi = d.watermarks()
    d.delete_records_before(hi)
    w = d.run("y", 10)  # no local state, nothing left to restore
    assert any("table sums[0]" in line and "emptied" in line for line in w.damaged), w.damaged


def test_damaged_changelog__truncated_past_the_checkpoint__local_state_kept_and_the_rest_restored(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    d = Damage(settings, new_topic, tmp_path)
    d.run("x", 100)  # the store in x reflects the changelog up to here...
    d.run("y", 100)  # ...which grows on (another machine)
    _, hi = d.watermarks()
    d.delete_records_before(hi - 3)  # retention took records x never saw
    w = d.run("x", 0)
    assert any("table sums[0]" in line and "are gone" in line for line in w.damaged), w.damaged
    # what x had plus what remained: the keys' totals are the last ones written
    totals = {v["key"]: v["total"] for v in _json(read_topic(settings, d.out, expect=200))}
    assert sum(totals.values()) == 200.0


def test_damaged_changelog__compacted_under_the_store__restore_ends_at_the_end_without_hanging(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    d = Damage(settings, new_topic, tmp_path)
    d.run("x", 50)
    set_configs(make_admin(settings), d.changelog, {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.001",
                                                    "delete.retention.ms": "0", "min.compaction.lag.ms": "0"})
    for _ in range(4):  # every run commits each of the 10 keys again: old versions to compact away
        d.run("x", 50)
    producer = make_producer(settings)

    def compacted() -> bool:
        producer.produce(d.changelog, b"0.0", b"__roll__", partition=0)  # rolls the active segment
        producer.flush(10)
        lo, hi = d.watermarks()
        return _count(settings, d.changelog) < hi - lo - 20  # holes: older versions of keys gone

    wait_until(compacted, timeout_s=120, interval_s=0.5, message="the log cleaner compacting the changelog")
    w = d.run("cold", 0)  # restores a changelog full of holes: must end
    assert counter(w.metrics.restored) > 0
    assert w.damaged == []  # compaction is not damage


def set_configs(admin: Any, topic: str, configs: dict[str, str]) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result()


def _count(settings: Settings, topic: str) -> int:
    consumer = make_consumer(settings, f"count-{uuid.uuid4().hex[:6]}", **{"enable.partition.eof": True,
                                                                            "isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        n = 0
        while True:
            msgs = consumer.consume(1000, timeout=5)
            if not msgs:
                return n
            for m in msgs:
                if m.error() is not None:
                    return n
                n += 1
    finally:
        consumer.close()


def _metric_total(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{name} ", f"{name}{{")))


@pytest.mark.timeout(420)
def test_standby__after_a_sigkill_the_survivor_resumes_reading_only_the_changelog_tail(
        settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    """Two exactly-once workers, each the other's standby: one is SIGKILLed under load; the other
    fences its transactions, takes its partitions over from its warm copies, and every output is
    exactly the reference's."""
    source, out = new_topic("src", partitions=4), new_topic("out", partitions=4)
    app_id = f"standby-{uuid.uuid4().hex[:6]}"
    env = {"VIGIL_TEST_SOURCE": source, "VIGIL_TEST_OUT": out}
    ports = {"a": free_port(), "b": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs = {name: spawn_worker(settings, plugin=PLUGIN, app_id=app_id, instance_id=name, state_dir=tmp_path / name,
                                guarantee="exactly_once", env=env, log_path=tmp_path / f"{name}.log",
                                http=f"127.0.0.1:{port}", extra_args=("--standby-replicas", "1"))
             for name, port in ports.items()}
    first, second = make_events(3_000, 300, seed=3), make_events(1_000, 300, seed=4)
    try:
        wait_until(lambda: all(len(_health(url)["assigned"]) == 2 for url in urls.values()), timeout_s=90,
                   message="two partitions each")
        produce_events(settings, source, first)
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=120, message="caught up")
        wait_until(lambda: _metric_total(urls["b"], "vigil_standby_partitions") == 2
                   and _metric_total(urls["b"], "vigil_standby_records_total") > 0, timeout_s=60,
                   message="b keeping a's partitions warm")
        restored_before = _metric_total(urls["b"], "vigil_restored_records_total")
        stop_worker(procs["a"], kill=True)
        produce_events(settings, source, second)
        wait_until(lambda: len(_health(urls["b"])["assigned"]) == 4 and not _health(urls["b"])["restoring"],
                   timeout_s=120, message="b owning every partition")
        wait_until(lambda: group_lag(settings, app_id, source) == 0, timeout_s=120, message="caught up again")
        read_at_takeover = _metric_total(urls["b"], "vigil_restored_records_total") - restored_before
        # a's open transaction was aborted by b before it took a's partitions over (not left to time out)
        fenced = _metric_total(urls["b"], "vigil_fenced_workers_total")
    finally:
        for proc in procs.values():
            stop_worker(proc)
    changelog_records = sum(1 for _ in read_topic(settings, settings.topic(f"{app_id}-sums-changelog"),
                                                  expect=1, timeout_s=10))
    assert read_at_takeover < changelog_records / 4, (read_at_takeover, changelog_records)
    assert fenced == 1, "b fenced the transactions of the SIGKILLed a"
    everything = first + second
    outputs: dict[str, list[float]] = {}
    for value in _json(read_topic(settings, out, expect=len(everything))):
        outputs.setdefault(value["key"], []).append(value["total"])
    assert outputs == reference_totals(everything), "every output exactly once, in order per key"


def _health(url: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{url}/healthz", timeout=5).json())
    except httpx.HTTPError:
        return {"assigned": [], "restoring": []}
