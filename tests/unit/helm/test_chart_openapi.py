"""Every object the chart renders, in every ci scenario, is valid for Kubernetes K8S_VERSION: checked
strictly against the release's own OpenAPI document (unknown fields, wrong types, missing required
fields, nulls all fail) and the Prometheus Operator's CRD for ServiceMonitors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helm.chart_support import SERVICEMONITOR_API, Render, scenario_names
from tests.unit.helm.openapi import KubeSchemas

pytestmark = pytest.mark.timeout(1800)


@pytest.mark.parametrize("with_crds", [True, False], ids=["with-servicemonitor-crd", "bare-cluster"])
@pytest.mark.parametrize("scenario", scenario_names())
def test_rendered_objects_are_valid_kubernetes_objects(render: Render, kube_schemas: KubeSchemas, scenario: str,
                                                       with_crds: bool) -> None:
    manifest = render(scenario, api_versions=(SERVICEMONITOR_API,) if with_crds else ())
    assert manifest.objects
    errors = [line for obj in manifest.objects for line in kube_schemas.errors(obj)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "template", "spec", "containers", 0, "securityContex"), {}, "'securityContex' was unexpected"),
    (("spec", "replicas"), "2", "'2' is not of type 'integer'"),
    (("spec", "template", "spec", "containers", 0, "resources", "limits", "memory"), "2GB", "'2GB' is not valid"),
    (("metadata", "annotations"), None, "None is not of type 'object'"),
], ids=["unknown-field", "wrong-type", "bad-quantity", "null"])
def test_the_check_catches_what_the_api_server_refuses_or_drops(render: Render, kube_schemas: KubeSchemas,
                                                              path: tuple[str | int, ...], value: object,
                                                              message: str) -> None:
    import copy

    worker = copy.deepcopy(render("default").require("StatefulSet", "worker"))
    assert not kube_schemas.errors(worker)
    node: Any = worker
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = kube_schemas.errors(worker)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("values", [
    {"networkPolicy": {"enabled": True}},
    {"networkPolicy": {"enabled": True, "egress": {"enabled": True}}, "ui": {"enabled": True}},
    {"ui": {"enabled": True, "ingress": {"enabled": True}}},
    {"beacons": {"enabled": True, "hostSysMountPath": "", "spool": {"fixPermissions": False}}},
    {"worker": {"persistence": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
     "executor": {"enabled": False}, "jobs": {"topics": {"enabled": False}, "schemas": {"enabled": False}}},
    {"bridges": {"http": {"enabled": True}, "syslog": {"enabled": True, "service": {"type": "NodePort"}}}},
    {"rules": {"files": {"a.yaml": "rules: []", "gates/deploy.yaml": "gates: []", "runbooks/r.yaml": "runbooks: []"},
               "existingFolders": {"approvals": "team-approvals"}},
     "ui": {"enabled": True, "replicas": 1, "persistence": {"enabled": True, "existingClaim": "ui-history"}}},
    {"apiToken": {"existingSecret": "vigil-api", "metricsOpen": True}, "serviceMonitor": {"enabled": True},
     "bridges": {"syslog": {"enabled": True, "tls": {"enabled": True, "existingSecret": "syslog-tls",
                                                      "clientCA": {"existingSecret": "syslog-ca"}}}}},
], ids=["networkpolicy-defaults", "egress-and-ui", "ui-ingress", "beacons-bare", "worker-only", "bridges",
        "rules-folders-ui-claim", "token-syslog-tls"])
def test_option_combinations_are_valid_kubernetes_objects(render: Render, kube_schemas: KubeSchemas,
                                                          values: dict[str, Any]) -> None:
    errors = [line for obj in render(values=values).objects for line in kube_schemas.errors(obj)]
    assert not errors, "\n".join(errors)
