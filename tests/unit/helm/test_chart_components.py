"""The chart's scale-out and API features over rendered output: standby replicas reach the workers,
the UI asks every worker pod, one API token reaches every HTTP server and the ServiceMonitors, syslog
over TLS from a Secret, and the rules directory carrying orchestration's gates/ and runbooks/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.rules.loader import rule_files
from tests.unit.helm.chart_support import (
    HelmFailed,
    Render,
    containers,
    env_of,
    parse_vigil_args,
    pod_spec,
)

pytestmark = pytest.mark.timeout(1800)

TOKEN = "t0k3n-0123456789abcdef"
HTTP_SERVERS = ("worker", "executor", "bridge-http", "ui")


def _container(manifest: Any, kind: str, component: str) -> dict[str, Any]:
    (container,) = containers(manifest.require(kind, component))
    return container


def _volume(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == name]
    return volume


# --- workers: standbys and readiness -------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "standbys"), [("default", 0), ("scaled-out", 2)])
def test_standby_replicas_reach_every_worker(render: Render, scenario: str, standbys: int) -> None:
    params = parse_vigil_args(_container(render(scenario), "StatefulSet", "worker")["args"]).params
    assert params["standby_replicas"] == standbys


# --- the UI and the workers it asks --------------------------------------------------------------


def test_ui_asks_every_worker_pod_by_its_stable_name(render: Render) -> None:
    manifest = render("scaled-out")
    params = parse_vigil_args(_container(manifest, "Deployment", "ui")["args"]).params
    worker = manifest.require("StatefulSet", "worker")
    service = manifest.require("Service", "worker")
    assert worker["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
    name, headless = worker["metadata"]["name"], service["metadata"]["name"]
    assert list(params["workers"]) == [f"http://{name}-{i}.{headless}.vigil.svc:8088" for i in range(6)]


def test_ui_asks_the_workers_it_is_given(render: Render) -> None:
    manifest = render(values={"ui": {"enabled": True, "workers": ["http://vigil-worker:8088"]},
                              "worker": {"enabled": False}})
    params = parse_vigil_args(_container(manifest, "Deployment", "ui")["args"]).params
    assert list(params["workers"]) == ["http://vigil-worker:8088"]


def test_ui_history_on_a_claim_with_one_pod_at_a_time(render: Render) -> None:
    manifest = render("scaled-out")
    ui = manifest.require("Deployment", "ui")
    claim = manifest.require("PersistentVolumeClaim", "ui")
    assert _volume(ui, "state")["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert ui["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    container = _container(manifest, "Deployment", "ui")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "state"]
    assert env_of(container)["VIGIL_STATE_DIR"]["value"] == mount["mountPath"]


def test_ui_without_persistence_keeps_history_in_a_bounded_emptydir(render: Render) -> None:
    manifest = render("everything-enabled")
    assert manifest.component("PersistentVolumeClaim", "ui") is None
    assert _volume(manifest.require("Deployment", "ui"), "state")["emptyDir"] == {"sizeLimit": "2Gi"}


def test_workers_query_api_takes_the_ui_the_executors_and_the_workers(render: Render) -> None:
    manifest = render("everything-enabled")
    (rule,) = manifest.require("NetworkPolicy", "worker")["spec"]["ingress"][:1]
    components = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}
    assert components == {"worker", "executor", "ui"}
    assert rule["ports"] == [{"port": 8088, "protocol": "TCP"}]


# --- one API token -------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "secret", "key"), [
    ({"apiToken": {"value": TOKEN}}, "rel-vigil-secrets", "api-token"),
    ({"apiToken": {"existingSecret": "vigil-api", "key": "token"}}, "vigil-api", "token"),
])
def test_one_api_token_reaches_every_http_server_and_the_service_monitors(
        render: Render, values: dict[str, Any], secret: str, key: str) -> None:
    values = {**values, "ui": {"enabled": True}, "bridges": {"http": {"enabled": True}},
              "serviceMonitor": {"enabled": True}}
    manifest = render(values=values)
    for component in HTTP_SERVERS:
        kind = "StatefulSet" if component in ("worker", "executor") else "Deployment"
        workload = manifest.require(kind, component)
        volume = _volume(workload, "api-token")["secret"]
        assert volume["secretName"] == secret and volume["items"] == [{"key": key, "path": "api-token"}]
        container = _container(manifest, kind, component)
        assert "VIGIL_API_METRICS_OPEN" not in env_of(container)
    for monitor in manifest.of_kind("ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": secret, "key": key}}
    if secret != "rel-vigil-secrets":
        assert manifest.component("Secret", "secrets") is None or "api-token" not in \
            manifest.require("Secret", "secrets")["data"]


def test_open_metrics_are_scraped_without_the_token(render: Render) -> None:
    manifest = render(values={"apiToken": {"value": TOKEN, "metricsOpen": True}, "serviceMonitor": {"enabled": True}})
    for monitor in manifest.of_kind("ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert "authorization" not in endpoint
    for component in ("worker", "executor"):
        assert env_of(_container(manifest, "StatefulSet", component))["VIGIL_API_METRICS_OPEN"]["value"] == "true"


def test_without_a_token_nothing_is_mounted(render: Render) -> None:
    manifest = render("default")
    for workload in manifest.workloads():
        assert all(v["name"] != "api-token" for v in pod_spec(workload).get("volumes", []))


# --- syslog over TLS -----------------------------------------------------------------------------


def test_syslog_tls_listener_with_its_certificate_from_a_secret(render: Render) -> None:
    manifest = render("everything-enabled")
    bridge = manifest.require("Deployment", "bridge-syslog")
    container = _container(manifest, "Deployment", "bridge-syslog")
    params = parse_vigil_args(container["args"]).params
    assert "tls://0.0.0.0:6514" in params["listens"]
    env = env_of(container)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert all(m["readOnly"] for name, m in mounts.items() if name.startswith("syslog-tls"))
    cert = _volume(bridge, "syslog-tls")["secret"]
    assert cert["secretName"] == "vigil-syslog-tls"
    paths = {item["path"] for item in cert["items"]}
    assert env["VIGIL_BRIDGE_SYSLOG_TLS_CERT"]["value"] == f"{mounts['syslog-tls']['mountPath']}/tls.crt"
    assert env["VIGIL_BRIDGE_SYSLOG_TLS_KEY"]["value"] == f"{mounts['syslog-tls']['mountPath']}/tls.key"
    assert paths == {"tls.crt", "tls.key"}
    ca = _volume(bridge, "syslog-tls-ca")["configMap"]
    assert ca == {"name": "syslog-client-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert env["VIGIL_BRIDGE_SYSLOG_TLS_CLIENT_CA"]["value"] == f"{mounts['syslog-tls-ca']['mountPath']}/ca.crt"
    service = manifest.require("Service", "bridge-syslog")
    tls_port = {"name": "syslog-tls", "port": 6514, "targetPort": "syslog-tls", "protocol": "TCP"}
    assert tls_port in service["spec"]["ports"]
    policy = manifest.require("NetworkPolicy", "bridge-syslog")
    assert {"port": 6514, "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]


# --- the rules directory: rules, gates/ and runbooks/ --------------------------------------------


GATES_AND_RUNBOOKS = {"rules": {
    "files": {
        "load.yaml": {"rules": [{"name": "a", "match": {"name": "load"}, "actions": [{"print": {}}]}]},
        "gates/deploy-web.yaml": "gates: []\n",
        "runbooks/restart.yaml": {"runbooks": []},
    },
    "existingFolders": {"approvals": "team-approvals"},
}}


@pytest.mark.parametrize(("kind", "component"), [("StatefulSet", "worker"), ("StatefulSet", "executor"),
                                                 ("Deployment", "ui")])
def test_rules_directory_carries_gates_and_runbooks_folders(render: Render, tmp_path: Path, kind: str,
                                                            component: str) -> None:
    manifest = render(values={**GATES_AND_RUNBOOKS, "ui": {"enabled": True}})
    workload = manifest.require(kind, component)
    container = _container(manifest, kind, component)
    rules_dir = env_of(container)["VIGIL_RULES_DIR"]["value"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "subPath" not in mounts[rules_dir] and mounts[rules_dir]["readOnly"]
    configmap = manifest.require("ConfigMap", "rules")
    volume = _volume(workload, mounts[rules_dir]["name"])["configMap"]
    assert volume["name"] == configmap["metadata"]["name"]
    # What the pod sees, laid out as the kubelet does: each item's path, its key's content.
    for item in volume["items"]:
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(configmap["data"][item["key"]])
    assert set(configmap["data"]) == {item["key"] for item in volume["items"]}
    assert [p.relative_to(tmp_path).as_posix() for p in rule_files(tmp_path)] == [
        "gates/deploy-web.yaml", "load.yaml", "runbooks/restart.yaml"]
    approvals = mounts[f"{rules_dir}/approvals"]
    assert approvals["readOnly"] and _volume(workload, approvals["name"])["configMap"] == {"name": "team-approvals"}


ISSUE24_FILES = {"rules": {"files": {
    "load.yaml": {"rules": [{"name": "load-high", "match": {"name": "load"},
                             "actions": [{"print": {"text": "{{ lookup('owner') }}"}}]}]},
    "routes/dev.yaml": {"routes": [{"name": "to-dev", "match": {"tags.env": "production"}, "to": "dev-events",
                                    "sample": {"percent": 10}}]},
    "hierarchy.yaml": {"levels": ["host/{{ subject }}", "role/{{ tags.role }}", "common"]},
    "data/role/db.yaml": {"owner": "dba"},
    "data/common.json": {"owner": "ops"},
}}}


def test_routes_and_nested_lookup_data_reach_the_rules_directory(render: Render, tmp_path: Path) -> None:
    from app.lookups.loader import LookupLoader
    from app.routing.loader import RouteSetLoader, routes_dir
    from app.rules.fields import EVENT_TYPE

    manifest = render(values=ISSUE24_FILES)
    worker = manifest.require("StatefulSet", "worker")
    configmap = manifest.require("ConfigMap", "rules")
    for item in _volume(worker, "rules")["configMap"]["items"]:  # laid out as the kubelet does
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(configmap["data"][item["key"]])
    assert json.loads((tmp_path / "data/common.json").read_text()) == {"owner": "ops"}
    assert [p.relative_to(tmp_path).as_posix() for p in rule_files(tmp_path)] == ["load.yaml"]
    routes = RouteSetLoader(routes_dir(tmp_path)).reload()
    assert not routes.errors and [route.name for route in routes] == ["to-dev"]
    lookups = LookupLoader(tmp_path)
    lookups.reload()
    assert not lookups.errors
    assert lookups.data.lookup("owner", {"subject": "db1", "tags": {"role": "db"}}, EVENT_TYPE).value == "dba"
    assert lookups.data.lookup("owner", {"subject": "web1", "tags": {"role": "web"}}, EVENT_TYPE).value == "ops"


def test_metric_sinks_reach_the_workers_as_settings(render: Render) -> None:
    from app.config import Settings
    from app.sinks.config import SinksConfig

    sinks = {"prometheus": {"enabled": True, "max_series": 1000},
             "remote_write": {"enabled": True, "url": "http://prometheus:9090/api/v1/write"}}
    env = env_of(_container(render(values={"worker": {"sinks": sinks}}), "StatefulSet", "worker"))
    config = SinksConfig.from_settings(Settings(sinks=json.loads(env["VIGIL_SINKS"]["value"])))
    assert config.prometheus.enabled and config.prometheus.max_series == 1000
    assert config.remote_write.enabled and not config.graphite.enabled
    assert "VIGIL_SINKS" not in env_of(_container(render("default"), "StatefulSet", "worker"))


# --- forwarders: the routes and sinks in workers of their own --------------------------------------


def test_forwarders_run_the_routes_and_sinks_in_a_group_of_their_own(render: Render) -> None:
    sinks = {"prometheus": {"enabled": True}, "graphite": {"enabled": True, "address": "carbon:2003"}}
    manifest = render(values={"forwarder": {"enabled": True, "replicas": 2}, "serviceMonitor": {"enabled": True},
                              "worker": {"sinks": sinks, "plugins": ["acme.agents"], "standbyReplicas": 1,
                                         "extraEnv": [{"name": "VIGIL_SINK_OTLP_HEADERS_FILE",
                                                       "value": "/etc/otlp/headers"}]}})
    forwarder = _container(manifest, "StatefulSet", "forwarder")
    worker = _container(manifest, "StatefulSet", "worker")
    forwarding = parse_vigil_args(forwarder["args"]).params
    working = parse_vigil_args(worker["args"]).params
    assert forwarding["stage_names"] == ("routes", "sinks")
    assert working["stage_names"] == ("pipeline", "rules", "members")  # nothing handled twice
    assert forwarding["app_id"] == "vigil-forwarder" != working["app_id"]
    # the workers' plugins and standbys are theirs; the sinks and their credentials are shared
    assert forwarding["plugins"] == () and working["plugins"] == ("acme.agents",)
    assert forwarding["standby_replicas"] == 0 and working["standby_replicas"] == 1
    assert forwarding["batch_scheduling"] and not working["batch_scheduling"]  # never preempts the pipeline
    assert env_of(forwarder)["VIGIL_SINKS"] == env_of(worker)["VIGIL_SINKS"]
    assert env_of(forwarder)["VIGIL_SINK_OTLP_HEADERS_FILE"]["value"] == "/etc/otlp/headers"
    statefulset = manifest.require("StatefulSet", "forwarder")
    assert statefulset["spec"]["replicas"] == 2
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]  # the sinks' disk buffers
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    monitor = manifest.require("ServiceMonitor", "forwarder")  # the sinks' Prometheus exposition
    assert monitor["spec"]["selector"]["matchLabels"] == manifest.require("Service", "forwarder")["spec"]["selector"]


def test_a_forwarder_key_set_to_false_or_zero_wins_over_the_workers(render: Render) -> None:
    manifest = render(values={"forwarder": {"enabled": True, "batchScheduling": False,
                                            "podDisruptionBudget": {"enabled": False},
                                            "persistence": {"enabled": False}},
                              "worker": {"batchScheduling": True, "terminationGracePeriodSeconds": 90}})
    forwarding = parse_vigil_args(_container(manifest, "StatefulSet", "forwarder")["args"]).params
    assert not forwarding["batch_scheduling"]
    assert parse_vigil_args(_container(manifest, "StatefulSet", "worker")["args"]).params["batch_scheduling"]
    assert manifest.component("PodDisruptionBudget", "forwarder") is None
    assert manifest.component("PodDisruptionBudget", "worker") is not None
    forwarder = manifest.require("StatefulSet", "forwarder")
    assert "volumeClaimTemplates" not in forwarder["spec"]
    assert pod_spec(forwarder)["terminationGracePeriodSeconds"] == 90  # a key it does not set: the worker's


def test_only_scrapers_reach_a_forwarder(render: Render) -> None:
    scrapers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    manifest = render(values={"forwarder": {"enabled": True}, "networkPolicy": {"enabled": True,
                                                                              "metricsFrom": scrapers}})
    policy = manifest.require("NetworkPolicy", "forwarder")
    assert policy["spec"]["podSelector"] == manifest.require("StatefulSet", "forwarder")["spec"]["selector"]
    assert policy["spec"]["ingress"] == [{"from": scrapers, "ports": [{"port": 8088, "protocol": "TCP"}]}]


@pytest.mark.parametrize(("values", "reason"), [
    ({"worker": {"stages": ["pipeline", "routes"]}}, "both run the routes stage"),
    ({"forwarder": {"stages": []}}, "/forwarder/stages': minItems"),  # the values schema says so first
])
def test_forwarders_refuse_stages_that_would_run_twice(render: Render, values: dict[str, Any], reason: str) -> None:
    with pytest.raises(HelmFailed, match=reason):
        render(values={**values, "forwarder": {"enabled": True, **values.get("forwarder", {})}})


def test_executor_finds_runbooks_and_the_workers_their_waits_ask(render: Render) -> None:
    env = env_of(_container(render("scaled-out"), "StatefulSet", "executor"))
    assert env["VIGIL_RULES_DIR"]["value"] == "/etc/vigil/rules"
    assert len(env["VIGIL_WORKER_URL"]["value"].split(",")) == 6


def test_rule_files_without_folders_mount_the_whole_configmap(render: Render) -> None:
    worker = render("everything-enabled").require("StatefulSet", "worker")
    assert "items" not in _volume(worker, "rules")["configMap"]
