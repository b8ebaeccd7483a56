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
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    HelmFailed,
    Manifest,
    Render,
)


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


@pytest.fixture(scope="session")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-values")


@pytest.fixture(scope="session")
def render(run_helm: Callable[..., str], values_dir: Path) -> Iterator[Render]:
    """render(scenario=None, values=None, release=RELEASE) -> Manifest, cached per arguments.

    `scenario` picks ci/<scenario>-values.yaml; `values` (a dict) is applied on top of it.
    """
    cache: dict[tuple[str | None, str, str], Manifest] = {}

    def _render(scenario: str | None = None, values: dict[str, Any] | None = None,
                release: str = RELEASE) -> Manifest:
        extra = yaml.safe_dump(values or {}, sort_keys=True)
        key = (scenario, extra, release)
        if key not in cache:
            args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
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
    """render_notes(scenario) -> NOTES.txt as `helm install` prints it.

    `helm template` skips NOTES.txt and `helm install --dry-run` needs a cluster, so a copy of the
    chart renders the notes through `tpl` into a document of their own.
    """
    chart = tmp_path_factory.mktemp("notes") / CHART.name
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        'kind: Notes\nnotes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')

    def _render(scenario: str) -> str:
        out = run_helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
                       "-f", str(CI_DIR / f"{scenario}-values.yaml"), "--show-only", "templates/notes-check.yaml")
        return yaml.safe_load(out)["notes"]

    return _render
