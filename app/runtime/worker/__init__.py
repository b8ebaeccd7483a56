"""The Kafka worker, split by job: the loop and wiring (loop), commit points (commits), restore
(restore), decoding and dead letters (intake), partitions held in a registry outage (holds), and
its options (options). See loop.py for how it works."""

from app.runtime.worker.loop import OutputsBlocked, Worker
from app.runtime.worker.options import COMMIT_INTERVAL_HELP, Guarantee, WorkerOptions, commit_due

__all__ = ["COMMIT_INTERVAL_HELP", "Guarantee", "OutputsBlocked", "Worker", "WorkerOptions", "commit_due"]
