"""A real Kubernetes API server on loopback for the chart tests: etcd + kube-apiserver, no kubelet.

`start_cluster(workdir)` starts Debian's etcd and the kube-apiserver built by `make k8s-deps`
(tests/integration/k8s/build-kube-apiserver.sh) on free loopback ports, with everything they
need in `workdir`: self-signed serving certificates (the server makes them in --cert-dir), a
service-account signing key, a static admin token (RBAC; the token's user is in system:masters)
and a kubeconfig for helm. No controllers run: objects are admitted, validated and defaulted by
the real server, but no pod ever starts and no Job ever finishes unless a test says so
(`KubeApi.complete_job` / `fail_job` play the Job controller's part).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.devstack.kafka import free_port

__all__ = ["ClusterFailed", "KubeApi", "KubeCluster", "start_cluster"]

#: Hook Jobs never run without a kubelet: the tests complete them through the status subresource.
_JOB_COMPLETE = ("SuccessCriteriaMet", "Complete")


class ClusterFailed(RuntimeError):
    """etcd or the kube-apiserver did not start; the message carries the end of its log."""


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _tls(ca_file: Path) -> ssl.SSLContext:
    """TLS trusting only the API server's self-signed certificate."""
    return ssl.create_default_context(cafile=str(ca_file))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KubeApi:
    """A small client of the API server (httpx, admin token): what the tests need beyond helm."""

    url: str
    token: str
    ca_file: Path
    _client: httpx.Client = field(init=False, repr=False)
    _resources: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, verify=_tls(self.ca_file), timeout=30.0,
                                    headers={"Authorization": f"Bearer {self.token}"})

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._client.request(method, path, **kwargs)

    def get(self, path: str) -> dict[str, Any]:
        response = self._client.get(path)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def resource_path(self, api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
        """The REST path of objects of this kind (from discovery), of one object when `name` is given."""
        if (api_version, kind) not in self._resources:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            for resource in self.get(base)["resources"]:
                if "/" not in resource["name"]:
                    self._resources[(api_version, resource["kind"])] = (resource["name"], resource["namespaced"])
        plural, namespaced = self._resources[(api_version, kind)]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def get_object(self, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
        """The server's copy of a rendered object (None when it does not exist)."""
        response = self._client.get(self.resource_path(obj["apiVersion"], obj["kind"], namespace,
                                                       obj["metadata"]["name"]))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def dry_run_create(self, obj: dict[str, Any], namespace: str) -> httpx.Response:
        """Create `obj` with dryRun=All and fieldValidation=Strict: the server's full admission and
        validation, unknown or duplicate fields refused, nothing stored."""
        return self._client.post(self.resource_path(obj["apiVersion"], obj["kind"], namespace),
                                 params={"dryRun": "All", "fieldValidation": "Strict"}, json=obj)

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        response = self._client.post(path, json=obj)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        response = self._client.post("/api/v1/namespaces",
                                     json={"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": name, "labels": labels or {}}})
        if response.status_code != 409:
            response.raise_for_status()

    def jobs(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
        return items

    def _job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        meta = job["metadata"]
        path = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}/status"
        response = self._client.patch(path, json={"status": status},
                                      headers={"Content-Type": "application/merge-patch+json"})
        if response.status_code != 200:
            raise AssertionError(f"Job {meta['name']}: status refused: {response.text}")

    def complete_job(self, job: dict[str, Any]) -> None:
        """Mark a Job succeeded, as the Job controller would after its pod exited 0."""
        now = _now()
        self._job_status(job, {
            "startTime": now, "completionTime": now, "succeeded": 1, "ready": 0, "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [{"type": kind, "status": "True", "reason": "CompletionsReached",
                            "message": "Reached expected number of succeeded pods",
                            "lastProbeTime": now, "lastTransitionTime": now} for kind in _JOB_COMPLETE]})

    def fail_job(self, job: dict[str, Any], reason: str, message: str) -> None:
        """Mark a Job failed, as the Job controller would (e.g. reason PodFailurePolicy)."""
        now = _now()
        self._job_status(job, {
            "startTime": now, "failed": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [{"type": kind, "status": "True", "reason": reason, "message": message,
                            "lastProbeTime": now, "lastTransitionTime": now} for kind in ("FailureTarget", "Failed")]})


@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver pair and how to reach it."""

    url: str
    kubeconfig: Path
    api: KubeApi
    version: str
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        """Stop the API server, then etcd; waits for both to exit."""
        self.api.close()
        for process in self.processes:  # apiserver first: it is the one talking to etcd
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_ready(check: Any, process: subprocess.Popen[bytes], log: Path, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterFailed(f"{what} exited with {process.returncode}:\n{_log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.2)
    raise ClusterFailed(f"{what} not ready after {timeout_s}s:\n{_log_tail(log)}")


def _kubeconfig(url: str, ca_file: Path, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {{server: "{url}", certificate-authority: "{ca_file}"}}
users:
  - name: admin
    user: {{token: "{token}"}}
contexts:
  - name: test
    context: {{cluster: test, user: admin}}
current-context: test
"""


@contextlib.contextmanager
def start_cluster(workdir: Path, *, kube_apiserver: Path, etcd: str = "etcd",
                  timeout_s: float = 120.0) -> Iterator[KubeCluster]:
    """etcd and kube-apiserver on free loopback ports, data and logs in `workdir`; stopped on exit."""
    etcd_bin = shutil.which(etcd)
    if etcd_bin is None:
        raise ClusterFailed("etcd is not installed (`make k8s-deps` installs Debian's etcd-server)")
    certs, keys = workdir / "certs", workdir / "keys"
    certs.mkdir(parents=True)
    keys.mkdir()
    subprocess.run(["openssl", "genrsa", "-out", str(keys / "sa.key"), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(keys / "sa.key"), "-pubout", "-out", str(keys / "sa.pub")],
                   check=True, capture_output=True)
    token = secrets.token_hex(24)
    (keys / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')

    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    etcd_log, api_log = workdir / "etcd.log", workdir / "kube-apiserver.log"
    try:
        etcd_process = _start([
            etcd_bin, "--name", "test", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls", "", "--log-level", "warn"], etcd_log)
        processes.append(etcd_process)
        _wait_ready(lambda: httpx.get(f"http://127.0.0.1:{client_port}/health", timeout=2).status_code == 200,
                    etcd_process, etcd_log, "etcd", timeout_s)

        api_process = _start([
            str(kube_apiserver),
            "--etcd-servers", f"http://127.0.0.1:{client_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(api_port), "--cert-dir", str(certs),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(keys / "sa.pub"),
            "--service-account-signing-key-file", str(keys / "sa.key"),
            "--token-auth-file", str(keys / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", "10.96.0.0/16",
            # No kubelet will ever serve this address; do not publish it as the `kubernetes` Service.
            "--endpoint-reconciler-type", "none",
            "--profiling=false"], api_log)
        processes.insert(0, api_process)
        url = f"https://127.0.0.1:{api_port}"
        ca_file = certs / "apiserver.crt"
        _wait_ready(lambda: ca_file.is_file() and httpx.get(
            f"{url}/readyz", verify=_tls(ca_file), headers={"Authorization": f"Bearer {token}"},
            timeout=5).status_code == 200, api_process, api_log, "kube-apiserver", timeout_s)
        api = KubeApi(url, token, ca_file)
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(url, ca_file, token))
        kubeconfig.chmod(0o600)
        version = api.get("/version")["gitVersion"]
        cluster = KubeCluster(url, kubeconfig, api, version, processes)
    except BaseException:
        for process in processes:
            process.kill()
            process.wait()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
