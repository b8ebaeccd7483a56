"""Running a process as a Linux batch task: its threads' wake-ups never preempt the task running
on that CPU, so they take CPU when the running task yields it or at the end of its time slice,
never in the middle of its work; their share of the CPU stays what their niceness gives.

For work beside a latency- or throughput-critical worker on the same machine: the sinks' sender
process (app.sinks.process), and a worker started with `--batch-scheduling` (the chart's
forwarders: the routes and sinks beside the pipeline's workers on a node), which also runs
BACKGROUND_NICENESS steps nicer. Measured with
benchmarks/pipeline.py on 2 vCPUs: the routes and sinks in a forwarder process preempted the
pipeline's worker thread 3,000-5,500 times per run (against 80-550 without them), 0.9-1.2 s of it
waiting runnable per 1M events.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["BACKGROUND_NICENESS", "BATCH_POLICY", "run_as_batch_task"]

#: the policy's name in the os module (Linux only)
BATCH_POLICY: Final = "SCHED_BATCH"
#: How much nicer a background worker (`vigil worker --batch-scheduling`) runs than the others on
#: its machine: when it shares a CPU with one, it yields that CPU sooner once woken (measured, the
#: forwarder of benchmarks/pipeline.py: the pipeline's worker thread waited 0.2-0.6 s runnable per
#: 1M events at +10 against 0.9-1.3 s at +0, and the forwarder still finished 0.2-0.3 s after it).
#: Within a container's cgroup it only orders the container's own processes.
BACKGROUND_NICENESS: Final = 10


def run_as_batch_task(niceness: int = 0) -> bool:
    """Make the calling thread a batch task, `niceness` steps nicer (threads it starts later
    inherit both: call it before any client starts its threads), where the OS has that policy and
    allows it (an unprivileged process may always switch to it, and be nicer); returns whether it did."""
    policy = getattr(os, BATCH_POLICY, None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        if niceness:
            os.nice(niceness)
    except OSError:
        return False
    return True
