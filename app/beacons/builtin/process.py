"""`process`: is a process running? Found by pid file, by command-line substring or by name."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from app.beacons.base import Beacon, BeaconContext, Reading, Unreadable, describe_error, observing, report
from app.beacons.config import ProcessConfig, ProcessSpec
from app.model.events import Event, Severity

if TYPE_CHECKING:
    from app.beacons.builtin import BuildEnv

__all__ = ["build", "compare_processes", "find_processes", "pid_from_file", "process_reading"]

Found = tuple[int, ...] | Unreadable


def pid_from_file(path: Path) -> int | None:
    """The live pid named in a pid file; None when the file or the process is gone.

    Raises OSError when the file cannot be read and ValueError when it does not hold a pid.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None  # stopping a service commonly removes its pid file
    if not text.isdigit():
        raise ValueError(f"pid file {path} does not hold a pid (it says {text[:40]!r})")
    return int(text) if _alive(int(text)) else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; we just may not look inside


def _matches(spec: ProcessSpec, info: Mapping[str, Any]) -> bool:
    if info.get("status") == psutil.STATUS_ZOMBIE:
        return False
    cmdline = info.get("cmdline") or []
    if spec.cmdline is not None:
        return spec.cmdline in " ".join(cmdline)
    wanted = spec.match or spec.name
    # `name` is the kernel's 15-character comm; scripts show up by their interpreter, so also
    # accept the basename of argv[0].
    return info.get("name") == wanted or (bool(cmdline) and os.path.basename(cmdline[0]) == wanted)


def find_processes(specs: Sequence[ProcessSpec]) -> dict[str, Found]:
    """Pids per spec (by name), or Unreadable when a pid file cannot be read."""
    found: dict[str, Found] = {}
    scanned: list[Mapping[str, Any]] | None = None
    me = os.getpid()  # the runner never counts as the process it watches
    for spec in specs:
        if spec.pidfile is not None:
            try:
                pid = pid_from_file(spec.pidfile)
            except (OSError, ValueError) as exc:
                found[spec.name] = Unreadable(describe_error(exc))
                continue
            found[spec.name] = (pid,) if pid is not None else ()
            continue
        if scanned is None:  # one pass over the process table serves every spec
            scanned = [p.info for p in psutil.process_iter(["pid", "name", "cmdline", "status"])]
        found[spec.name] = tuple(sorted(info["pid"] for info in scanned if info["pid"] != me and _matches(spec, info)))
    return found


def process_reading(spec: ProcessSpec, pids: tuple[int, ...], *, kind: str = "process") -> Reading:
    """Running (OK) when at least min_count processes match, else stopped (CRITICAL)."""
    running = len(pids) >= spec.min_count
    shown = ", ".join(str(p) for p in pids[:10]) + (", ..." if len(pids) > 10 else "")
    if running:
        text = f"{spec.name} is running (pid {shown})" if pids else f"{spec.name} is running"
    elif pids:
        text = f"{spec.name}: {len(pids)} running (pid {shown}), fewer than {spec.min_count}"
    else:
        text = f"{spec.name} is not running"
    return Reading("running" if running else "stopped", Severity.OK if running else Severity.CRITICAL, text,
                   tags={kind: spec.name, "pids": ",".join(str(p) for p in pids)}, metrics={"count": float(len(pids))})


def compare_processes(ctx: BeaconContext, previous: dict[str, Reading] | None, found: Mapping[str, Found], *,
                      specs: Sequence[ProcessSpec]) -> tuple[list[Event], dict[str, Reading]]:
    """Per spec ("process:nginx"): STATUS when it starts or stops; a METRIC sample of the count."""
    readings, unreadable = {}, []
    for spec in specs:
        name, pids = f"process:{spec.name}", found[spec.name]
        if isinstance(pids, Unreadable):
            ctx.problem(name, pids.error)
            unreadable.append(name)
        else:
            readings[name] = process_reading(spec, pids)
    return report(ctx, previous, readings, unreadable=unreadable)


def build(config: ProcessConfig, env: BuildEnv) -> list[Beacon]:
    """The process beacon (none when no process is configured)."""
    if not config.processes:
        return []
    specs = list(config.processes)
    observe = lambda ctx: find_processes(specs)  # noqa: E731
    compare = partial(compare_processes, specs=specs)
    return [Beacon("process", config.interval_ms, observing(observe, compare), description=__doc__ or "")]
