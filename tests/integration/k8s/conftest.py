"""A real kube-apiserver (with etcd) on loopback for the chart tests, one per test module."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.k8s.cluster import KubeCluster, start_cluster
from tests.integration.k8s.hooks import HelmRun, JobFailure, run_helm
from tests.unit.helm.chart_support import HELM, K8S_OPENAPI, KUBE_APISERVER, SERVICEMONITOR_CRD


@pytest.fixture(scope="session")
def k8s_tools() -> None:
    """helm, kube-apiserver, etcd and the OpenAPI document: `make k8s-deps` (the first build takes minutes)."""
    if not all(p.is_file() for p in (HELM, KUBE_APISERVER, K8S_OPENAPI, SERVICEMONITOR_CRD)):
        build = subprocess.run(["make", "k8s-deps"], cwd=REPO, capture_output=True, text=True, check=False)
        if build.returncode != 0:
            pytest.fail(f"`make k8s-deps` failed:\n{build.stdout}\n{build.stderr}")


@pytest.fixture(scope="module")
def cluster(k8s_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """etcd + kube-apiserver of K8S_VERSION on free loopback ports; stopped after the module."""
    with start_cluster(tmp_path_factory.mktemp("kube"), kube_apiserver=KUBE_APISERVER) as running:
        yield running


Helm = Callable[..., HelmRun]


@pytest.fixture(scope="module")
def helm(cluster: KubeCluster) -> Helm:
    """helm(namespace, *args, fail=None) against the module's cluster, completing hook Jobs (see hooks.run_helm)."""

    def _helm(namespace: str, *args: str, fail: dict[str, JobFailure] | None = None) -> HelmRun:
        return run_helm(HELM, cluster.kubeconfig, cluster.api, namespace, *args, fail=fail)

    return _helm


@pytest.fixture(scope="session")
def chart_path() -> Path:
    return REPO / "helm" / "vigil"
