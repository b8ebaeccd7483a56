"""The chart against a real Kubernetes API server (K8S_VERSION, built from the k8s.io/kubernetes
module): every ci scenario installs, every object is admitted, validated strictly and defaulted
by the server, upgrades go from one scenario to the next, and the hook Jobs run in order with
their hook annotations; a schema the registry refuses fails the upgrade before anything changes.

No kubelet or controllers run: the API objects are proven, not the pods. The tests play the Job
controller for helm's hook Jobs (tests/integration/k8s/hooks.py).
"""

from __future__ import annotations

import re
import subprocess
from functools import partial
from typing import Any

import pytest
import yaml

from tests.conftest import wait_until
from tests.integration.k8s.cluster import KubeCluster
from tests.integration.k8s.conftest import Helm
from tests.integration.k8s.hooks import HelmRun, JobFailure
from tests.unit.helm.chart_support import CHART, CI_DIR, HELM, K8S_VERSION, scenario_names

pytestmark = pytest.mark.timeout(900)

SCENARIOS = scenario_names()
#: The upgrade path through every scenario: each `helm upgrade` starts from the one before.
UPGRADE_PATH = ["default", "exactly-once-with-sasl", "everything-enabled", "scaled-out", "minimal-external-registry"]
#: Pod Security Standards level every pod template but the beacons' meets (they read the host).
PSS_LEVEL = "restricted"


def _namespace(cluster: KubeCluster, name: str) -> str:
    cluster.api.ensure_namespace(name, labels={f"pod-security.kubernetes.io/{mode}": PSS_LEVEL
                                               for mode in ("warn", "audit")})
    return name


def _values(scenario: str) -> list[str]:
    return ["-f", str(CI_DIR / f"{scenario}-values.yaml")]


def _template(scenario: str, release: str, namespace: str) -> list[dict[str, Any]]:
    """What the chart renders for a release on this bare cluster (no optional CRD kinds)."""
    out = subprocess.run([str(HELM), "template", release, str(CHART), "--namespace", namespace,
                          "--kube-version", K8S_VERSION, *_values(scenario)],
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def _differences(rendered: Any, stored: Any, path: str = "") -> list[str]:
    """Where the server's copy differs from what was rendered (fields the server adds are fine, and
    it leaves out empty maps and lists)."""
    if rendered in ({}, []) and stored is None:
        return []
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return [f"{path}: {stored!r} instead of a mapping"]
        return [d for key, value in rendered.items() for d in _differences(value, stored.get(key), f"{path}.{key}")]
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return [f"{path}: {stored!r} instead of {rendered!r}"]
        return [d for i, (a, b) in enumerate(zip(rendered, stored, strict=True))
                for d in _differences(a, b, f"{path}[{i}]")]
    if rendered != stored and str(rendered) != str(stored):  # the server writes quantities and ports its way
        return [f"{path}: {stored!r} instead of {rendered!r}"]
    return []


def _hook_jobs_by_weight(objects: list[dict[str, Any]]) -> list[str]:
    """The hook Jobs' names in the order helm must run them."""
    jobs = [obj for obj in objects if obj["kind"] == "Job"]
    return [job["metadata"]["name"] for job in sorted(jobs, key=lambda j: int(
        j["metadata"]["annotations"]["helm.sh/hook-weight"]))]


def _warnings(run: HelmRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "warning" in line.lower()]


def test_server_is_the_pinned_release(cluster: KubeCluster) -> None:
    assert cluster.version == K8S_VERSION


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_server_admits_every_object_under_strict_field_validation(cluster: KubeCluster, scenario: str) -> None:
    """A dry-run create of each rendered object (hooks included): full admission and validation,
    unknown or duplicate fields refused; Pod Security warnings only for the beacons."""
    namespace = _namespace(cluster, f"dry-{scenario}")
    refused, warned = [], []
    for obj in _template(scenario, "rel", namespace):
        response = cluster.api.dry_run_create(obj, namespace)
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if response.status_code != 201:
            refused.append(f"{where}: {response.status_code} {response.json().get('message')}")
        warning = response.headers.get("warning")
        if warning and obj["metadata"]["labels"]["app.kubernetes.io/component"] != "beacons":
            warned.append(f"{where}: {warning}")
    assert not refused, "\n".join(refused)
    assert not warned, "\n".join(warned)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_install_of_each_scenario(cluster: KubeCluster, helm: Helm, scenario: str) -> None:
    namespace = _namespace(cluster, f"install-{scenario}")
    release = "rel"
    run = helm(namespace, "install", release, str(CHART), *_values(scenario), "--timeout", "2m").check()
    rendered = _template(scenario, release, namespace)
    # No warning but the Pod Security one the beacon DaemonSet earns by reading the host.
    warnings = _warnings(run)
    pod_security = [w for w in warnings if "would violate PodSecurity" in w]
    assert [w for w in warnings if w not in pod_security] == []
    beacons = [obj for obj in rendered if obj["kind"] == "DaemonSet"]
    assert len(pod_security) == len(beacons)
    assert all("hostPath" in w for w in pod_security)

    for obj in rendered:
        if _is_hook(obj):
            continue
        stored = cluster.api.get_object(obj, namespace)
        assert stored is not None, f"{obj['kind']}/{obj['metadata']['name']} was not created"
        differences = _differences(obj, stored)
        assert not differences, f"{obj['kind']}/{obj['metadata']['name']}:\n" + "\n".join(differences)

    # The hook Jobs ran in order, as helm hooks, and were deleted once they had succeeded.
    assert run.job_names == _hook_jobs_by_weight(rendered)
    for job in run.jobs:
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert cluster.api.jobs(namespace) == []
    assert f"Vigil 0.1.0 is installed as release \"{release}\"" in run.stdout  # NOTES


def test_helm_upgrade_from_each_scenario_to_the_next(cluster: KubeCluster, helm: Helm) -> None:
    namespace = _namespace(cluster, "upgrades")
    first, *rest = UPGRADE_PATH
    helm(namespace, "install", "rel", str(CHART), *_values(first), "--timeout", "2m").check()
    previous = _template(first, "rel", namespace)
    for scenario in rest:
        rendered = _template(scenario, "rel", namespace)
        if _claims(previous) != _claims(rendered):
            # Claim templates are immutable: the documented way (README, "Upgrading") is to delete the
            # StatefulSet but not its pods or claims, then upgrade; the new one adopts the pods.
            _orphan_worker(cluster, namespace, previous)
        run = helm(namespace, "upgrade", "rel", str(CHART), *_values(scenario), "--timeout", "2m").check()
        assert run.job_names == _hook_jobs_by_weight(rendered), scenario  # pre-upgrade hooks, topics first
        worker = next(obj for obj in rendered if obj["kind"] == "StatefulSet"
                      and obj["metadata"]["labels"]["app.kubernetes.io/component"] == "worker")
        stored = cluster.api.get_object(worker, namespace)
        assert stored is not None and stored["spec"]["replicas"] == worker["spec"]["replicas"], scenario
        for obj in previous:  # what the new scenario does not render is gone
            if not _is_hook(obj) and obj["metadata"]["name"] not in {o["metadata"]["name"] for o in rendered
                                                                    if o["kind"] == obj["kind"]}:
                left = cluster.api.get_object(obj, namespace)
                # A claim is held by its pvc-protection finalizer until the controller manager (not
                # run here) sees no pod using it: deleted, but still stored with a deletionTimestamp.
                assert left is None or "deletionTimestamp" in left["metadata"], f"{scenario}: {obj['kind']} left over"
        previous = rendered
    history = helm(namespace, "history", "rel", "-o", "yaml").check()
    statuses = [revision["status"] for revision in yaml.safe_load(history.stdout)]
    assert statuses == ["superseded"] * (len(UPGRADE_PATH) - 1) + ["deployed"]


def _claims(objects: list[dict[str, Any]]) -> Any:
    return [obj["spec"].get("volumeClaimTemplates") for obj in objects if obj["kind"] == "StatefulSet"]


def _orphan_worker(cluster: KubeCluster, namespace: str, objects: list[dict[str, Any]]) -> None:
    """`kubectl delete statefulset NAME --cascade=orphan`, with the tests as the garbage collector:
    it would orphan the pods and then drop the `orphan` finalizer (there are no pods here)."""
    for obj in objects:
        if obj["kind"] == "StatefulSet" and obj["spec"].get("volumeClaimTemplates"):
            path = cluster.api.resource_path(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
            cluster.api.request("DELETE", path, json={"propagationPolicy": "Orphan"}).raise_for_status()
            cluster.api.request("PATCH", path, json={"metadata": {"finalizers": None}},
                                headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            wait_until(partial(_gone, cluster, obj, namespace), timeout_s=30,
                       message=f"StatefulSet {obj['metadata']['name']} deleted")


def _gone(cluster: KubeCluster, obj: dict[str, Any], namespace: str) -> bool:
    return cluster.api.get_object(obj, namespace) is None


def test_a_refused_schema_fails_the_upgrade_and_changes_nothing(cluster: KubeCluster, helm: Helm) -> None:
    namespace = _namespace(cluster, "refused-schema")
    helm(namespace, "install", "rel", str(CHART), "--timeout", "2m").check()
    refusal = JobFailure("PodFailurePolicy", "Container schemas for pod refused-schema/rel-vigil-schemas-x failed "
                         "with exit code 3 matching FailJob rule at index 0")
    run = helm(namespace, "upgrade", "rel", str(CHART), "--set", "worker.replicas=5", "--timeout", "2m",
               fail={"rel-vigil-schemas": refusal})
    assert run.returncode != 0
    assert re.search(r"pre-upgrade hooks failed.*job rel-vigil-schemas failed: PodFailurePolicy", run.stderr, re.S), (
        run.stderr)
    assert run.job_names == ["rel-vigil-topics", "rel-vigil-schemas"]
    # The upgrade stopped before touching the release's objects; the failed Job stays for `kubectl logs`.
    worker = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/rel-vigil-worker")
    assert worker["spec"]["replicas"] == 2
    assert [job["metadata"]["name"] for job in cluster.api.jobs(namespace)] == ["rel-vigil-schemas"]
    history = yaml.safe_load(helm(namespace, "history", "rel", "-o", "yaml").check().stdout)
    assert [revision["status"] for revision in history] == ["deployed", "failed"]
