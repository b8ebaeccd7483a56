"""Two `vigil worker` processes share the partitions under exactly-once; both are SIGKILLed and
restarted while events keep coming. Alerts, statuses, closed windows and the archive index must come
out exactly as a reference fold of the same events says, and a silence that began before the crash
expires after the restart."""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections import defaultdict
from typing import Any

from click.testing import CliRunner

from app.cli import CliContext
from app.config import Settings
from app.model.events import Event
from app.pipeline.cli import events_find_command, status_command
from app.runtime.testing import partition_for
from tests.conftest import wait_until
from tests.integration.pipeline.reference import reference
from tests.integration.runtime.kafka_helpers import group_lag, produce_events

IDENTITIES = 24
EVENTS = 1200
EVENT_SPACING_MS = 20
HEARTBEAT_TTL_S = 3.0
PARTITIONS = 6  # of `events` in topics.yaml
#: The heartbeat's partition: no other identity uses it, so its (newer) time makes nothing late.
HEARTBEAT_PARTITION = 5


def _subjects(prefix: str, count: int, *, on_heartbeat_partition: bool) -> list[str]:
    """Subjects whose key 'subject/svc' the producer's partitioner puts on (or off) HEARTBEAT_PARTITION."""
    chosen = []
    for i in itertools.count():
        if (partition_for(f"{prefix}{i}/svc", PARTITIONS) == HEARTBEAT_PARTITION) == on_heartbeat_partition:
            chosen.append(f"{prefix}{i}")
            if len(chosen) == count:
                return chosen
    raise AssertionError("unreachable")


def make_events(start_ms: int) -> list[Event]:
    """Events in time order (so none is late), with frequent state changes and one metric."""
    rng = random.Random(11)
    subjects = _subjects("host", IDENTITIES, on_heartbeat_partition=False)
    # 20 ms apart: 24 s of event time, so whatever the alignment of the 10 s windows to the epoch,
    # at least one closes (end + 5 s grace is reached); 10 ms spans left it to chance.
    return [Event(subject=rng.choice(subjects), name="svc", time=start_ms + i * EVENT_SPACING_MS,
                  severity=rng.choice((0, 0, 0, 1, 2)), metrics={"v": float(rng.randint(0, 100))})
            for i in range(EVENTS)]


def _cli(settings: Settings, command, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(command, list(args), obj=CliContext({"topic_prefix": settings.topic_prefix}))
    return result.exit_code, result.stdout, result.stderr


def test_exactly_once__two_workers_sigkill_restart(isolated_settings: Settings, pipeline_workers, topic_reader) -> None:
    s = isolated_settings
    app_id = f"eos-{uuid.uuid4().hex[:6]}"
    workers = [pipeline_workers(s, app_id=app_id, instance_id=f"w{i}").start() for i in (1, 2)]
    start_ms = int(time.time() * 1000) - 60_000
    events = make_events(start_ms)
    half = EVENTS // 2
    produce_events(s, s.topic("events"), events[:half])
    alerts = topic_reader(s, "alerts")
    alerts.wait_for(lambda r: len(r) >= 20, timeout_s=90, message="the workers processing")

    [silent] = _subjects("silent", 1, on_heartbeat_partition=True)
    heartbeat = Event(subject=silent, name="svc", ttl=HEARTBEAT_TTL_S)  # its silence spans the crash
    produce_events(s, s.topic("events"), [heartbeat])
    topic_reader(s, "status").wait_for(lambda r: any(x["subject"] == silent for x in r), timeout_s=60,
                                       message="the heartbeat committed")
    for w in workers:
        w.kill()
    produce_events(s, s.topic("events"), events[half:])
    deadline_s = heartbeat.time / 1000 + HEARTBEAT_TTL_S
    time.sleep(max(0.0, deadline_s - time.time()))  # restart after the deadline passed, nobody watching
    for w in workers:
        w.start()

    expected_alerts, expected_states = reference(events)
    want = len(expected_alerts) + 1  # + the expiry of the silent heartbeat
    alerts.wait_for(lambda r: len(r) >= want, timeout_s=120, message=f"{want} alerts")
    wait_until(lambda: group_lag(s, app_id, s.topic("events")) == 0, timeout_s=60, message="no lag")
    got = alerts.read_to_end()  # no lag: every alert is committed, with the offsets

    expired = [a for a in got if a["subject"] == silent]
    assert [(a["to_state"], a["cause_event_id"], a["time"]) for a in expired] == \
        [("EXPIRED", heartbeat.id, heartbeat.time + int(HEARTBEAT_TTL_S * 1000))]
    by_identity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in got:
        if a["subject"] != silent:
            by_identity[f"{a['subject']}/{a['name']}"].append(a)
    expected_by_identity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in expected_alerts:
        expected_by_identity[f"{a['subject']}/{a['name']}"].append(a)
    assert by_identity == expected_by_identity  # every alert once, in order per identity, field for field

    urls = [arg for w in workers for arg in ("--worker", w.url)]
    code, out, err = _cli(s, status_command, "host*", "--json", *urls)
    assert code == 0, err
    statuses = {f"{x['subject']}/{x['name']}": x for x in map(json.loads, out.splitlines())}
    assert {k: (v["state"], v["event_count"], v["last_event_id"], v["flapping"]) for k, v in statuses.items()} == \
        {k: (v.state, v.event_count, v.last_event_id, v.flapping) for k, v in expected_states.items()}

    code, out, err = _cli(s, events_find_command, "--since", "10m", "--limit", "5000", "--json", *urls)
    assert code == 0, err
    found = [json.loads(line)["id"] for line in out.splitlines()]
    assert sorted(found) == sorted([e.id for e in events] + [heartbeat.id])

    # closed windows: each published once, with exactly the events of its window
    metrics = topic_reader(s, "metrics").read_to_end()
    keys = [(m["subject"], m["size_ms"], m["window_start"]) for m in metrics]
    assert metrics and len(keys) == len(set(keys))
    for m in metrics:
        values = [e.metrics["v"] for e in events if e.subject == m["subject"]
                  and m["window_start"] <= e.time < m["window_end"]]
        assert (m["count"], m["sum"]) == (len(values), sum(values))
