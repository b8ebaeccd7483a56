"""Fixtures for the Helm chart tests: the helm CLI (built once by `make helm`) and rendered manifests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.helm.chart_support import (
    CHART,
    CI_DIR,
    HELM,
    K8S_OPENAPI,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    SERVICEMONITOR_API,
    SERVICEMONITOR_CRD,
    HelmFailed,
    Manifest,
    Render,
)
from tests.unit.helm.openapi import KubeSchemas, crd_schemas


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm CLI at .vigil/bin/helm, built once with `make helm` when missing (takes minutes)."""
    if not HELM.is_file():
        build = subprocess.run(["make", "helm"], cwd=REPO, capture_output=True, text=True, check=False)
        if build.returncode != 0:
            error = (build.stderr or build.stdout).strip()
            if shutil.which("go") is None:
                pytest.skip(f"helm cannot be built (`make helm`): {error}")
            pytest.fail(f"`make helm` failed:\n{build.stdout}\n{build.stderr}")
    return HELM


@pytest.fixture(scope="session")
def run_helm(helm: Path) -> Callable[..., str]:
    """Run a helm subcommand; its stdout, or HelmFailed with its stderr."""

    def run(*args: str) -> str:
        proc = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise HelmFailed(proc.stderr.strip() or proc.stdout.strip())
        return proc.stdout

    return run


def make_files(*paths: Path) -> None:
    """Make these files with `make` when missing (they come from `make k8s-deps`); fail with make's output."""
    missing = [str(p.relative_to(REPO)) for p in paths if not p.is_file()]
    if missing:
        build = subprocess.run(["make", *missing], cwd=REPO, capture_output=True, text=True, check=False)
        if build.returncode != 0:
            pytest.fail(f"`make {' '.join(missing)}` failed:\n{build.stdout}\n{build.stderr}")


@pytest.fixture(scope="session")
def kube_schemas() -> KubeSchemas:
    """Kubernetes' OpenAPI definitions of K8S_VERSION, plus the ServiceMonitor CRD's schema, closed."""
    make_files(K8S_OPENAPI, SERVICEMONITOR_CRD)
    return KubeSchemas(K8S_OPENAPI, crd_schemas(yaml.safe_load(SERVICEMONITOR_CRD.read_text())))


@pytest.fixture(scope="session")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-values")


@pytest.fixture(scope="session")
def render(run_helm: Callable[..., str], values_dir: Path) -> Iterator[Render]:
    """render(scenario=None, values=None, release=RELEASE, api_versions=(SERVICEMONITOR_API,)) -> Manifest,
    cached per arguments.

    `scenario` picks ci/<scenario>-values.yaml; `values` (a dict) is applied on top of it;
    `api_versions` are the optional kinds the pretended cluster serves (by default the
    ServiceMonitor: pass () for a cluster without the Prometheus Operator's CRDs).
    """
    cache: dict[tuple[str | None, str, str, tuple[str, ...]], Manifest] = {}

    def _render(scenario: str | None = None, values: dict[str, Any] | None = None,
                release: str = RELEASE, api_versions: tuple[str, ...] = (SERVICEMONITOR_API,)) -> Manifest:
        extra = yaml.safe_dump(values or {}, sort_keys=True)
        key = (scenario, extra, release, api_versions)
        if key not in cache:
            args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
            for api in api_versions:
                args += ["--api-versions", api]
            if scenario is not None:
                args += ["-f", str(CI_DIR / f"{scenario}-values.yaml")]
            if values:
                path = values_dir / f"values-{len(cache)}.yaml"
                path.write_text(extra)
                args += ["-f", str(path)]
            docs = yaml.safe_load_all(run_helm(*args))
            cache[key] = Manifest(tuple(doc for doc in docs if doc))
        return cache[key]

    yield _render


@pytest.fixture(scope="session")
def render_notes(run_helm: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """render_notes(scenario, with_crds=True) -> NOTES.txt as `helm install` prints it.

    `helm template` skips NOTES.txt and `helm install --dry-run` needs a cluster, so a copy of the
    chart renders the notes through `tpl` into a document of their own.
    """
    chart = tmp_path_factory.mktemp("notes") / CHART.name
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        'kind: Notes\nnotes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')

    def _render(scenario: str, with_crds: bool = True) -> str:
        out = run_helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
                       "-f", str(CI_DIR / f"{scenario}-values.yaml"), "--show-only", "templates/notes-check.yaml",
                       *(["--api-versions", SERVICEMONITOR_API] if with_crds else []))
        return yaml.safe_load(out)["notes"]

    return _render
