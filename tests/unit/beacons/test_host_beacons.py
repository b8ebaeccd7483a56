"""load, cpu, memory, disk, net, heartbeat: the comparisons with made-up observations, and one
real read of this host each (it must not fail here)."""

from __future__ import annotations

from pathlib import Path

from app.beacons.base import Thresholds, Unreadable
from app.beacons.builtin import BuildEnv
from app.beacons.builtin.cpu import compare_cpu, observe_cpu
from app.beacons.builtin.disk import DiskUsage, compare_disks, mounts_to_watch, observe_disks
from app.beacons.builtin.heartbeat import build as build_heartbeat
from app.beacons.builtin.load import LoadSample, compare_load, observe_load
from app.beacons.builtin.memory import MemorySample, compare_memory, observe_memory
from app.beacons.builtin.net import Interface, NetSample, compare_net, observe_net
from app.beacons.config import HeartbeatConfig
from app.model.events import Event, Kind, Severity

LOAD_T = Thresholds(warning=1.5, critical=3.0, hysteresis=0.2)


def statuses(events: list[Event]) -> list[tuple[str, int, str]]:
    return [(e.name, e.severity, e.tags.get("state", "")) for e in events if e.kind == Kind.STATUS]


def metrics(events: list[Event]) -> dict[str, dict[str, float]]:
    return {e.name: e.metrics for e in events if e.kind == Kind.METRIC}


# -- load --------------------------------------------------------------------------------------------
def test_load__samples_every_run_and_reports_crossing_per_cpu(make_ctx) -> None:
    ctx = make_ctx("load")
    events, state = compare_load(ctx, None, LoadSample(0.5, 1.0, 1.2, 4), thresholds=LOAD_T)
    assert statuses(events) == [("load", 0, "ok")]
    assert metrics(events)["load"]["load5_per_cpu"] == 0.25

    events, state = compare_load(ctx, state, LoadSample(9.0, 8.0, 3.0, 4), thresholds=LOAD_T)  # 2.0 per CPU
    assert statuses(events) == [("load", 1, "warning")]
    assert "warning at 1.5" in events[0].text

    events, state = compare_load(ctx, state, LoadSample(6.0, 5.6, 3.0, 4), thresholds=LOAD_T)  # 1.4: hysteresis
    assert statuses(events) == []
    assert [e.severity for e in events] == [1]  # the sample carries the current severity

    events, _ = compare_load(ctx, state, LoadSample(1.0, 1.0, 3.0, 4), thresholds=LOAD_T)
    assert statuses(events) == [("load", 0, "ok")]


# -- cpu ---------------------------------------------------------------------------------------------
def times(user: float, system: float, idle: float, iowait: float = 0.0, guest: float = 0.0) -> dict[str, float]:
    return {"user": user, "system": system, "idle": idle, "iowait": iowait, "guest": guest}


def test_cpu__first_run_only_remembers_then_busy_pct_from_deltas(make_ctx) -> None:
    ctx = make_ctx("cpu")
    t = Thresholds(warning=90, critical=98, hysteresis=5)
    events, state = compare_cpu(ctx, None, times(100, 50, 1000), thresholds=t)
    assert events == []
    # +30 user +10 system +50 idle +10 iowait (+20 guest, already inside user) = 100 s: 40 % busy
    events, state = compare_cpu(ctx, state, times(130, 60, 1050, 10, 20), thresholds=t)
    assert statuses(events) == [("cpu", 0, "ok")]
    assert metrics(events)["cpu"] == {"busy_pct": 40.0, "user_pct": 30.0, "system_pct": 10.0, "iowait_pct": 10.0}

    events, state = compare_cpu(ctx, state, times(225, 60, 1055, 10, 20), thresholds=t)  # 95 of 100 s busy
    assert statuses(events) == [("cpu", 1, "warning")]


def test_cpu__no_time_passed_keeps_the_older_observation(make_ctx) -> None:
    ctx = make_ctx("cpu")
    t = Thresholds(warning=90)
    _, state = compare_cpu(ctx, None, times(100, 50, 1000), thresholds=t)
    events, same = compare_cpu(ctx, state, times(100, 50, 1000), thresholds=t)
    assert events == [] and same.observation == state.observation


# -- memory ------------------------------------------------------------------------------------------
def test_memory__used_pct_of_what_is_not_available(make_ctx) -> None:
    ctx = make_ctx("memory")
    t = Thresholds(warning=90, critical=97, hysteresis=2)
    gib = 2**30
    events, state = compare_memory(ctx, None, MemorySample(16 * gib, 8 * gib, 4 * gib, gib), thresholds=t)
    assert statuses(events) == [("memory", 0, "ok")]
    assert metrics(events)["memory"]["used_pct"] == 50.0
    assert metrics(events)["memory"]["swap_used_pct"] == 25.0
    events, _ = compare_memory(ctx, state, MemorySample(16 * gib, gib // 4, 0, 0), thresholds=t)
    assert statuses(events) == [("memory", 2, "critical")]
    assert metrics(events)["memory"]["swap_used_pct"] == 0.0  # no swap is not a division by zero


# -- disk --------------------------------------------------------------------------------------------
def test_disk__per_mount_thresholds_and_a_missing_mount_is_a_problem(make_ctx) -> None:
    t = Thresholds(warning=85, critical=95, hysteresis=1)
    ctx = make_ctx("disk")
    usage = {"/": DiskUsage(100, 50, 50.0, 1000, 900), "/data": DiskUsage(100, 10, 90.0, 10, 0)}
    events, state = compare_disks(ctx, None, usage, thresholds=t)
    assert statuses(events) == [("disk:/", 0, "ok"), ("disk:/data", 1, "warning")]
    assert metrics(events)["disk:/data"]["inodes_used_pct"] == 100.0
    assert events[0].tags["mount"] == "/"

    ctx = make_ctx("disk")
    events, state2 = compare_disks(ctx, state, {"/": DiskUsage(100, 50, 50.0, 1000, 900),
                                                "/data": Unreadable("PermissionError: denied")}, thresholds=t)
    assert ctx.problems == ["disk:/data: PermissionError: denied"]
    assert "disk:/data" not in metrics(events)
    assert state2["disk:/data"] == state["disk:/data"]


def test_disk__reads_this_hosts_root_and_reports_a_missing_path(tmp_path: Path) -> None:
    usage = observe_disks(None, ["/", str(tmp_path / "gone")])
    assert isinstance(usage["/"], DiskUsage) and 0 <= usage["/"].used_pct <= 100
    assert isinstance(usage[str(tmp_path / "gone")], Unreadable)
    assert mounts_to_watch(["/", "/"]) == ["/"]
    assert mounts_to_watch(["all"])  # every physical partition, at least one


# -- net ---------------------------------------------------------------------------------------------
def sample(time_ms: int, **ifaces: Interface) -> NetSample:
    return NetSample(time_ms, ifaces)


def test_net__up_down_addresses_removed_and_rates(make_ctx) -> None:
    ctx = make_ctx("net")
    eth0 = Interface(True, frozenset({"10.0.0.5/24"}), (1000, 2000, 0, 0, 0, 0))
    events, state = compare_net(ctx, None, sample(0, eth0=eth0, eth1=Interface(False, frozenset())))
    # eth1 has been down since the start: how the host is meant to be, not an alarm
    assert statuses(events) == [("net:eth0", 0, "up"), ("net:eth1", 0, "down")]
    assert metrics(events) == {}  # rates need two samples

    eth0_moved = Interface(True, frozenset({"10.0.0.6/24"}), (3000, 12000, 1, 1, 0, 2))
    events, state = compare_net(ctx, state, sample(2000, eth0=eth0_moved, eth1=Interface(True, frozenset())))
    assert metrics(events)["net:eth0"] == {"bytes_sent_per_s": 1000.0, "bytes_recv_per_s": 5000.0,
                                           "errors_per_s": 1.0, "drops_per_s": 1.0}
    changed = [e for e in events if e.tags.get("change") == "addresses"]
    assert len(changed) == 1
    assert (changed[0].tags["added"], changed[0].tags["removed"]) == ("10.0.0.6/24", "10.0.0.5/24")
    assert statuses(events)[0] == ("net:eth1", 0, "up")

    events, state = compare_net(ctx, state, sample(4000, eth0=Interface(False, eth0_moved.addresses)),
                                down_severity=Severity.CRITICAL)
    assert ("net:eth0", 2, "down") in statuses(events)      # was up: now an alarm
    assert ("net:eth1", 2, "removed") in statuses(events)


def test_net__counter_reset_skips_one_sample(make_ctx) -> None:
    ctx = make_ctx("net")
    _, state = compare_net(ctx, None, sample(0, eth0=Interface(True, frozenset(), (5000, 5000, 0, 0, 0, 0))))
    events, _ = compare_net(ctx, state, sample(1000, eth0=Interface(True, frozenset(), (10, 10, 0, 0, 0, 0))))
    assert metrics(events) == {}


def test_net__reads_this_hosts_interfaces(make_ctx) -> None:
    found = observe_net(make_ctx("net"), only=None, ignore=["lo"])
    assert "lo" not in found.interfaces
    only_lo = observe_net(make_ctx("net"), only=["lo"], ignore=[])
    assert only_lo.interfaces["lo"].up and any(a.startswith("127.") for a in only_lo.interfaces["lo"].addresses)


# -- reads of this host ------------------------------------------------------------------------------
def test_host_reads__load_cpu_memory_answer() -> None:
    load = observe_load()
    assert load.cpus >= 1 and load.load1 >= 0
    assert observe_cpu()["idle"] > 0
    assert observe_memory().total_bytes > 0


# -- heartbeat ---------------------------------------------------------------------------------------
def test_heartbeat__ok_status_with_ttl_and_config_tags(make_ctx) -> None:
    (beacon,) = build_heartbeat(HeartbeatConfig(interval="5s"), BuildEnv(systemctl=None))
    assert beacon.interval_ms == 5000
    (event,), _ = beacon.check(make_ctx("heartbeat", tags={"role": "web", "dc": "ams1"}), None)
    assert (event.name, event.kind, event.severity, event.ttl) == ("heartbeat", Kind.STATUS, 0, 15.0)
    assert event.tags == {"role": "web", "dc": "ams1"}
    assert event.metrics["uptime_s"] >= 0
    assert HeartbeatConfig(interval="10s", ttl="45s").ttl_s == 45.0
