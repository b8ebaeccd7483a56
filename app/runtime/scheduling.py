"""Running a process as a Linux batch task: its threads' wake-ups never preempt the task running
on that CPU, so they take CPU when the running task yields it or at the end of its time slice,
never in the middle of its work; their share of the CPU stays what their niceness gives.

For work beside a latency- or throughput-critical worker on the same machine: the sinks' sender
process (app.sinks.process), and a worker started with `--batch-scheduling` (the chart's
forwarders: the routes and sinks beside the pipeline's workers on a node). Measured with
benchmarks/pipeline.py on 2 vCPUs: the routes and sinks in a forwarder process preempted the
pipeline's worker thread 3,000-5,500 times per run (against 80-550 without them), 0.9-1.2 s of it
waiting runnable per 1M events.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["BATCH_POLICY", "run_as_batch_task"]

#: the policy's name in the os module (Linux only)
BATCH_POLICY: Final = "SCHED_BATCH"


def run_as_batch_task() -> bool:
    """Make the calling thread a batch task (threads it starts later inherit it: call it before
    any client starts its threads) where the OS has that policy and allows it (an unprivileged
    process may always switch to it); returns whether it did."""
    policy = getattr(os, BATCH_POLICY, None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True
