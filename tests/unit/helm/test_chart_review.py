"""What a reviewer of the chart checks by eye, as tests over the rendered output of every ci
scenario: no privileged or root container (but the one documented exception), resources and
probes on every long-running container, the beacons' host mounts read-only, secrets only by
reference, PDBs and topology spread, NetworkPolicies covering every component; and the chart's
own files: the values schema, the generated values reference, the pinned Kubernetes release."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.helm.chart_support import (
    CHART,
    K8S_VERSION,
    PROM_OPERATOR_VERSION,
    REPO,
    Render,
    containers,
    pod_spec,
    scenario_names,
)

pytestmark = pytest.mark.timeout(1800)

SCENARIOS = scenario_names()
#: The only container that runs as root: it chowns the beacons' hostPath spool, with CAP_CHOWN alone.
ROOT_CONTAINERS = {"spool-owner"}
#: Long-running containers without probes, and why.
UNPROBED = {"beacons": "serves no port; exits (and is restarted) when it cannot go on"}
#: Env names that would hold a secret if given a plain value.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|KEY)$")


def _all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return [*containers(workload, init=True), *containers(workload)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_container_is_privileged_or_root(render: Render, scenario: str) -> None:
    for workload in render(scenario).workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in _all_containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context.get("privileged", False) is False, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}, where
            if container["name"] in ROOT_CONTAINERS:
                assert context["capabilities"].get("add") == ["CHOWN"], where
            else:
                assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where
                assert "add" not in context["capabilities"], where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_resources_and_long_running_ones_have_probes(render: Render, scenario: str) -> None:
    for workload in render(scenario).workloads():
        for container in _all_containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where
        if workload["kind"] == "Job":
            continue
        for container in containers(workload):
            if container["name"] in UNPROBED:
                continue
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = container.get(probe, {}).get("httpGet") or container.get(probe, {}).get("tcpSocket")
                if action:
                    assert action["port"] in ports, f"{where} {probe} probes a port it does not open"


def test_beacon_host_mounts_are_read_only(render: Render) -> None:
    daemonset = render("everything-enabled").require("DaemonSet", "beacons")
    host_volumes = {v["name"] for v in pod_spec(daemonset)["volumes"] if "hostPath" in v}
    assert {"host-proc", "host-sys", "spool"} <= host_volumes
    for container in _all_containers(daemonset):
        for mount in container["volumeMounts"]:
            if mount["name"] in host_volumes and mount["name"] != "spool":  # the spool is the one written
                assert mount.get("readOnly") is True, f"{container['name']}: {mount}"
    assert all(v["hostPath"]["path"] != "/var/run/docker.sock" for v in pod_spec(daemonset)["volumes"]
               if "hostPath" in v)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_reach_containers_only_by_reference(render: Render, scenario: str) -> None:
    """A secret-named variable is a secretKeyRef, or the path of a file in a read-only Secret mount
    (e.g. VIGIL_BRIDGE_SYSLOG_TLS_KEY, the TLS key's file)."""
    manifest = render(scenario)
    for workload in manifest.workloads():
        secret_volumes = {v["name"] for v in pod_spec(workload).get("volumes", []) if "secret" in v}
        for container in _all_containers(workload):
            secret_dirs = [m["mountPath"] for m in container.get("volumeMounts", [])
                           if m["name"] in secret_volumes and m.get("readOnly")]
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    where = f"{workload['metadata']['name']}/{container['name']}: {item['name']}"
                    if "value" in item:
                        assert any(item["value"].startswith(f"{d}/") for d in secret_dirs), \
                            f"{where} is neither a secretKeyRef nor a file in a mounted Secret"
                    else:
                        assert "secretKeyRef" in item["valueFrom"], f"{where} is not a secretKeyRef"
    secrets = manifest.of_kind("Secret")
    assert all(s["metadata"]["labels"]["app.kubernetes.io/component"] == "secrets" for s in secrets)


@pytest.mark.parametrize(("scenario", "budgets"), [
    ("default", {"worker": 1, "executor": 1}),
    ("scaled-out", {"worker": 2, "executor": 1}),
])
def test_workers_and_executors_have_disruption_budgets(render: Render, scenario: str,
                                                      budgets: dict[str, int]) -> None:
    manifest = render(scenario)
    for component, max_unavailable in budgets.items():
        pdb = manifest.require("PodDisruptionBudget", component)
        workload = manifest.require("StatefulSet", component)
        assert pdb["spec"]["maxUnavailable"] == max_unavailable
        assert pdb["spec"]["selector"] == workload["spec"]["selector"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_workers_spread_over_zones_and_nodes(render: Render, scenario: str) -> None:
    worker = render(scenario).require("StatefulSet", "worker")
    constraints = pod_spec(worker)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints:
        assert constraint["labelSelector"] == worker["spec"]["selector"]


def test_network_policies_cover_every_component(render: Render) -> None:
    manifest = render("everything-enabled")
    policies = manifest.of_kind("NetworkPolicy")
    selected = [p["spec"]["podSelector"]["matchLabels"] for p in policies if "Ingress" in p["spec"]["policyTypes"]]
    for workload in manifest.workloads():
        if workload["kind"] in ("Job", "DaemonSet"):  # no ports: Jobs and the beacon runner take no connections
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(s.items() <= labels.items() for s in selected), workload["metadata"]["name"]
    (egress,) = [p for p in policies if "Egress" in p["spec"]["policyTypes"]]
    ports = [port for rule in egress["spec"]["egress"] for port in rule.get("ports", [])]
    assert {"port": 53, "protocol": "UDP"} in ports and {"port": 9092, "protocol": "TCP"} in ports


def test_metrics_scrapers_may_reach_only_what_they_scrape(render: Render) -> None:
    manifest = render("everything-enabled")
    executor = manifest.require("NetworkPolicy", "executor")
    (rule,) = executor["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert rule["ports"] == [{"port": 8089, "protocol": "TCP"}]


def test_optional_crd_kinds_follow_the_cluster(render: Render, render_notes: Any) -> None:
    assert render("everything-enabled", api_versions=()).of_kind("ServiceMonitor") == []
    assert len(render("everything-enabled").of_kind("ServiceMonitor")) == 3
    assert "no ServiceMonitor was created" in render_notes("everything-enabled", with_crds=False)
    assert "no ServiceMonitor was created" not in render_notes("everything-enabled")


def test_notes_say_how_to_reach_the_ui_and_emit_a_first_event(render_notes: Any) -> None:
    notes = render_notes("everything-enabled")
    assert "https://vigil.example.com/" in notes
    assert "curl -s localhost:8080/v1/events" in notes and 'Authorization: Bearer $TOKEN' in notes
    assert "TOKEN=$(kubectl -n vigil get secret rel-vigil-secrets -o jsonpath='{.data.api-token}'" in notes
    assert "vigil emit web1 heartbeat" in notes
    default = render_notes("default")
    assert "vigil emit web1 heartbeat" in default and "/v1/events" not in default


# --- the chart's own files -----------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, node in schema.get("properties", {}).items():
        found.add(prefix + key)
        if node.get("additionalProperties") is False:
            found |= _keys(node, f"{prefix}{key}.")
    return found


def _value_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in values.items():
        found.add(prefix + key)
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            found |= _value_keys(value, node, f"{prefix}{key}.")
    return found


def test_schema_describes_exactly_the_values_and_accepts_the_defaults_and_scenarios() -> None:
    schema = _schema()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert _keys(schema) == _value_keys(values, schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(values)
    for scenario in SCENARIOS:
        validator.validate(yaml.safe_load((CHART / "ci" / f"{scenario}-values.yaml").read_text()) or {})


def test_values_reference_in_the_readme_is_current() -> None:
    result = subprocess.run([sys.executable, str(REPO / "helm" / "tools" / "values_reference.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_makefile_pins_the_release_the_tests_use() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^K8S_VERSION := {re.escape(K8S_VERSION)}$", makefile, re.MULTILINE)
    assert re.search(rf"^PROM_OPERATOR_VERSION := {re.escape(PROM_OPERATOR_VERSION)}$", makefile, re.MULTILINE)
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == ">=1.26.0-0"
