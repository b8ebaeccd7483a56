"""Running helm against the test API server while playing the Job controller for its hooks.

Without a kubelet no hook Job ever finishes, and helm waits for each one. `run_helm` runs helm
and, while it runs, watches the release namespace for Jobs: each one is recorded as the server
stored it (hook annotations included) and then completed, or failed when `fail` names it, so helm
goes on exactly as it would after a real Job's pod exited.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.k8s.cluster import KubeApi

__all__ = ["HelmRun", "JobFailure", "run_helm"]


@dataclass(frozen=True)
class JobFailure:
    """How a Job fails: the Job condition's reason and message (as the Job controller writes them)."""

    reason: str
    message: str


@dataclass
class HelmRun:
    """What one helm command did: exit code, output, and the Jobs it waited for, in order."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_names(self) -> list[str]:
        return [job["metadata"]["name"] for job in self.jobs]

    def check(self) -> HelmRun:
        """Self, or AssertionError with helm's output."""
        command = " ".join(self.args)
        assert self.returncode == 0, f"helm {command} failed ({self.returncode}):\n{self.stderr}\n{self.stdout}"
        return self


def _finished(job: dict[str, Any]) -> bool:
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in job.get("status", {}).get("conditions", []))


def run_helm(helm: Path, kubeconfig: Path, api: KubeApi, namespace: str, *args: str,
             fail: dict[str, JobFailure] | None = None, timeout_s: float = 180.0) -> HelmRun:
    """Run `helm <args> --kubeconfig ... -n <namespace>`, completing (or failing, per `fail`, keyed
    by Job name) every Job that appears in the namespace while it runs."""
    argv = [str(helm), *args, "--kubeconfig", str(kubeconfig), "--namespace", namespace]
    seen: dict[str, dict[str, Any]] = {}
    handled: set[str] = set()
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            subprocess.Popen(argv, stdout=out, stderr=err, text=True) as process:
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                out.seek(0)
                err.seek(0)
                raise AssertionError(f"helm {' '.join(args)} still running after {timeout_s}s:\n"
                                     f"{err.read()}\n{out.read()}")
            for job in api.jobs(namespace):
                uid = job["metadata"]["uid"]
                if uid in handled or _finished(job):  # e.g. a failed hook Job kept from an earlier run
                    continue
                handled.add(uid)
                seen[uid] = job
                failure = (fail or {}).get(job["metadata"]["name"])
                if failure is None:
                    api.complete_job(job)
                else:
                    api.fail_job(job, failure.reason, failure.message)
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return HelmRun(list(args), process.returncode, stdout, stderr, list(seen.values()))
