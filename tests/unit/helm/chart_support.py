"""What the Helm chart tests share: where the chart and helm are, and rendered manifests to query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from app.cli import cli

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "helm" / "vigil"
CI_DIR = CHART / "ci"
HELM = REPO / ".vigil" / "bin" / "helm"
#: The Kubernetes release the chart is proven against: its OpenAPI document validates every rendered
#: object, and tests/integration/k8s runs its kube-apiserver (`make k8s-deps`; the Makefile's
#: K8S_VERSION and PROM_OPERATOR_VERSION must be these).
K8S_VERSION = "v1.34.2"
PROM_OPERATOR_VERSION = "v0.85.0"
K8S_DIR = REPO / ".vigil" / "k8s"
KUBE_APISERVER = K8S_DIR / "bin" / f"kube-apiserver-{K8S_VERSION}"
K8S_OPENAPI = K8S_DIR / f"swagger-{K8S_VERSION}.json"
SERVICEMONITOR_CRD = K8S_DIR / f"servicemonitors-{PROM_OPERATOR_VERSION}.yaml"
#: `helm template --kube-version` (helm built with `go install` would otherwise assume v1.20).
KUBE_VERSION = K8S_VERSION.removeprefix("v")
#: What `helm template` is told the cluster serves besides the built-in kinds (optional CRD kinds).
SERVICEMONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
RELEASE = "rel"
NAMESPACE = "vigil"

#: Kinds whose objects carry a pod template.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

__all__ = [
    "CHART",
    "CI_DIR",
    "HELM",
    "K8S_DIR",
    "K8S_OPENAPI",
    "K8S_VERSION",
    "KUBE_APISERVER",
    "KUBE_VERSION",
    "NAMESPACE",
    "PROM_OPERATOR_VERSION",
    "RELEASE",
    "REPO",
    "SERVICEMONITOR_API",
    "SERVICEMONITOR_CRD",
    "WORKLOAD_KINDS",
    "HelmFailed",
    "Manifest",
    "Render",
    "ci_values",
    "containers",
    "env_of",
    "parse_vigil_args",
    "pod_spec",
    "scenario_names",
    "vigil_containers",
]


class HelmFailed(Exception):
    """helm exited non-zero; the message is its stderr."""


def scenario_names() -> list[str]:
    """Every `ci/<scenario>-values.yaml` of the chart, by scenario name."""
    return sorted(path.name.removesuffix("-values.yaml") for path in CI_DIR.glob("*-values.yaml"))


def ci_values(scenario: str) -> dict[str, Any]:
    """The values of one ci scenario, parsed."""
    return yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()) or {}


@dataclass(frozen=True)
class Manifest:
    """The objects `helm template` rendered, with lookups by kind and component."""

    objects: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def component(self, kind: str, component: str) -> dict[str, Any] | None:
        """The one object of `kind` labelled with `component`, or None."""
        found = [obj for obj in self.of_kind(kind)
                 if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        assert len(found) <= 1, f"{len(found)} {kind}s of component {component}"
        return found[0] if found else None

    def require(self, kind: str, component: str) -> dict[str, Any]:
        """The one object of `kind` labelled with `component`; AssertionError when there is none."""
        found = self.component(kind, component)
        assert found is not None, f"no {kind} of component {component}"
        return found

    def workloads(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in WORKLOAD_KINDS]

    def configmap_data(self) -> dict[str, str]:
        """Every ConfigMap entry, keyed `<configmap>/<key>`."""
        return {f"{cm['metadata']['name']}/{key}": value
                for cm in self.of_kind("ConfigMap") for key, value in (cm.get("data") or {}).items()}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    return pod_spec(workload).get("initContainers" if init else "containers") or []


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {item["name"]: item for item in container.get("env") or []}


Render = Callable[..., Manifest]


def vigil_containers(manifest: Manifest) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, container) for every container running the Vigil image (init containers too)."""
    return [(w["metadata"]["name"], c) for w in manifest.workloads()
            for c in [*containers(w, init=True), *containers(w)]]


def parse_vigil_args(args: list[str]) -> click.Context:
    """Resolve `vigil <args>` with the real CLI and parse its options (validates them; runs nothing)."""
    words = list(args)
    command: click.Command = cli
    ctx = click.Context(cli, info_name="vigil")
    while isinstance(command, click.Group):
        name = words.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`vigil {' '.join(args)}`: vigil has no command {name!r}"
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    return command.make_context(ctx.info_name, words, parent=ctx.parent)
