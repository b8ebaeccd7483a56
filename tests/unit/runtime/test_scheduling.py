"""Batch scheduling: the calling thread and the threads it starts become batch tasks, and
`vigil worker --batch-scheduling` is one before it loads plugins or starts clients."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.runtime.scheduling import BACKGROUND_NICENESS, BATCH_POLICY

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not hasattr(os, BATCH_POLICY), reason=f"no {BATCH_POLICY} on this OS")


def _python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120, check=False)


def test_the_thread_and_the_threads_it_starts_become_batch_tasks() -> None:
    code = textwrap.dedent("""
        import os, threading
        from app.runtime.scheduling import run_as_batch_task
        seen = []
        print(os.sched_getscheduler(0), run_as_batch_task(), os.sched_getscheduler(0))
        thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
        thread.start(); thread.join()
        print(seen[0])
    """)
    result = _python(code)
    assert result.returncode == 0, result.stderr
    before, did, after, started = result.stdout.split()
    assert int(before) == os.SCHED_OTHER and did == "True"
    assert int(after) == int(started) == os.SCHED_BATCH


def test_a_nicer_batch_task_on_request() -> None:
    result = _python("import os\nfrom app.runtime.scheduling import run_as_batch_task\n"
                     "before = os.nice(0)\nprint(run_as_batch_task(3), os.nice(0) - before)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "3"]


@pytest.mark.parametrize("flag", [True, False])
def test_worker_is_a_batch_task_before_it_loads_plugins(tmp_path: Path, flag: bool) -> None:
    (tmp_path / "policy_probe.py").write_text("import os, sys\nprint('policy', os.sched_getscheduler(0), "
                                              "'niceness', os.nice(0), file=sys.stderr)\n")
    args = ["worker", "--no-builtins", "--plugins", "policy_probe", "--http", ""]
    code = "import sys\nfrom app.cli import main\nsys.argv = ['vigil', *sys.argv[1:]]\nmain()"
    result = _python(code, *args, *(["--batch-scheduling"] if flag else []), cwd=tmp_path)
    assert "no agents to run" in result.stderr  # the probe has none: the worker stops there
    policy, niceness = (os.SCHED_BATCH, os.nice(0) + BACKGROUND_NICENESS) if flag else (os.SCHED_OTHER, os.nice(0))
    assert f"policy {policy} niceness {niceness}" in result.stderr
