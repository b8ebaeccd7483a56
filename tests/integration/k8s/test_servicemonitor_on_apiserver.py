"""Optional CRD kinds follow the cluster: on a cluster without the Prometheus Operator the chart
renders no ServiceMonitor (and says so), and once its CRD is installed an upgrade creates them,
validated by the server against the CRD's own schema. (A module of its own: its own cluster.)"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import wait_until
from tests.integration.k8s.cluster import KubeCluster
from tests.integration.k8s.conftest import Helm
from tests.unit.helm.chart_support import CHART, CI_DIR, HELM, K8S_VERSION, SERVICEMONITOR_API, SERVICEMONITOR_CRD

pytestmark = pytest.mark.timeout(900)

VALUES = ["-f", str(CI_DIR / "everything-enabled-values.yaml")]


def _servicemonitors(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    response = cluster.api.request("GET", f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/servicemonitors")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _install_crd(cluster: KubeCluster) -> None:
    crd = yaml.safe_load(SERVICEMONITOR_CRD.read_text())
    cluster.api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

    def served() -> bool:
        stored = cluster.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
        established = any(c["type"] == "Established" and c["status"] == "True"
                          for c in (stored.get("status") or {}).get("conditions") or [])
        discovery = cluster.api.request("GET", "/apis/monitoring.coreos.com/v1")
        return established and discovery.status_code == 200

    wait_until(served, timeout_s=60, interval_s=0.2, message="the ServiceMonitor CRD served")


def test_servicemonitors_appear_once_the_cluster_serves_the_kind(cluster: KubeCluster, helm: Helm) -> None:
    namespace = "monitored"
    cluster.api.ensure_namespace(namespace)
    installed = helm(namespace, "install", "rel", str(CHART), *VALUES, "--timeout", "2m").check()
    assert "no ServiceMonitor was created" in installed.stdout
    assert _servicemonitors(cluster, namespace) == []

    _install_crd(cluster)
    upgraded = helm(namespace, "upgrade", "rel", str(CHART), *VALUES, "--timeout", "2m").check()
    assert "no ServiceMonitor was created" not in upgraded.stdout
    rendered = [doc for doc in yaml.safe_load_all(subprocess.run(
        [str(HELM), "template", "rel", str(CHART), "-n", namespace, "--kube-version", K8S_VERSION,
         "--api-versions", SERVICEMONITOR_API, *VALUES], capture_output=True, text=True, check=True).stdout)
                if doc and doc["kind"] == "ServiceMonitor"]
    stored = {sm["metadata"]["name"]: sm for sm in _servicemonitors(cluster, namespace)}
    assert set(stored) == {sm["metadata"]["name"] for sm in rendered} and len(stored) == 3
    for monitor in rendered:
        assert stored[monitor["metadata"]["name"]]["spec"] == monitor["spec"]
        check = cluster.api.request("POST", f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/servicemonitors",
                                    params={"dryRun": "All", "fieldValidation": "Strict"},
                                    json={**monitor, "metadata": {**monitor["metadata"], "name": "strict-check"}})
        assert check.status_code == 201, check.text
