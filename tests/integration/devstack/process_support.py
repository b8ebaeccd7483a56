"""Watching a supervisor process from a test: its stdout read line by line with deadlines (from a
raw pipe the test can close at any moment, as `tee` dies under Ctrl-C), and its process tree."""

from __future__ import annotations

import os
import re
import select
import time

import psutil

from app.devstack.kafka import pid_alive

__all__ = ["PipeLines", "alive", "descendants"]


class PipeLines:
    """The lines written to a pipe, read without threads, so the test can close it between reads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: list[str] = []
        self._partial = b""
        self.closed = False

    def wait_for(self, pattern: str, *, timeout_s: float, after: int = 0) -> re.Match[str]:
        """The first line (from index `after`) matching `pattern`; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        checked = after
        while True:
            for i in range(checked, len(self.lines)):
                if (match := regex.search(self.lines[i])) is not None:
                    return match
            checked = max(checked, len(self.lines))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout_s}s waiting for a line matching {pattern!r}; "
                                     "output so far:\n" + "\n".join(self.lines[-60:]))
            if not self._read(min(left, 0.5)):
                raise AssertionError(f"the output ended before a line matched {pattern!r}:\n"
                                     + "\n".join(self.lines[-60:]))

    def _read(self, timeout_s: float) -> bool:
        """Read what is there (waiting up to timeout_s); False at end of file."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return True
        chunk = os.read(self.fd, 65536)
        if not chunk:
            return False
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode(errors="replace") for line in complete]
        return True

    def close(self) -> None:
        """Close the read end: the writer's next write fails with EPIPE."""
        if not self.closed:
            os.close(self.fd)
            self.closed = True


def descendants(pid: int) -> dict[int, str]:
    """Every live process under `pid` (any depth), as pid -> command line."""
    out = {}
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            out[proc.pid] = " ".join(proc.cmdline())
        except psutil.Error:
            pass
    return out


def alive(pids: dict[int, str]) -> dict[int, str]:
    """Those of `pids` still running (zombies count as gone)."""
    return {pid: cmd for pid, cmd in pids.items() if pid_alive(pid)}
