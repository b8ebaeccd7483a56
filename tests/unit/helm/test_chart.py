"""The Helm chart at helm/vigil: it lints, renders every ci scenario, and what it renders is what
Vigil's processes and Kubernetes need (the real CLI parses every container's arguments, the real
config models load every rendered config file).

helm comes from .vigil/bin/helm (`make helm`, built by the session fixture when missing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from app.beacons.config import load_beacons_config
from app.cli import cli
from app.executor.config import load_executor_config
from app.rules.loader import RuleSetLoader
from app.topics.spec import load_topics_file
from tests.unit.helm.chart_support import (
    CHART,
    CI_DIR,
    KUBE_VERSION,
    NAMESPACE,
    REPO,
    Render,
    containers,
    env_of,
    parse_vigil_args,
    pod_spec,
    scenario_names,
    vigil_containers,
)

# The first test may build helm with `make helm` (minutes); every helm call after that is quick.
pytestmark = pytest.mark.timeout(1800)

SCENARIOS = scenario_names()
REQUIRED_SCENARIOS = {"default", "minimal-external-registry", "exactly-once-with-sasl", "everything-enabled",
                      "scaled-out"}
#: `vigil` commands the chart runs that the CLI does not have yet, with the issue that brings them.
#: When the command lands, the test below fails: check the chart's flags against it and drop it here.
PENDING_COMMANDS: dict[str, str] = {}
#: helm refuses longer release names.
LONGEST_RELEASE = "observability-platform-production-europe-west1-blue-a"


# --- lint and scenarios -------------------------------------------------------------------------


def test_ci_has_one_values_file_per_required_scenario() -> None:
    assert set(SCENARIOS) == REQUIRED_SCENARIOS


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=["no-values", *SCENARIOS])
def test_chart_lints_strictly(run_helm: Any, scenario: str | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    if scenario:
        args += ["-f", str(CI_DIR / f"{scenario}-values.yaml")]
    output = run_helm(*args)
    assert "0 chart(s) failed" in output


def test_every_values_key_is_commented() -> None:
    """Each key of values.yaml has a comment above it or at its end; keys inside a value documented as
    a whole (`# --` above its key, e.g. resources or probes) are covered by that comment."""
    undocumented = []
    open_keys: list[tuple[int, bool]] = []  # (indent, documented as a whole) of the keys enclosing a line
    comments: list[str] = []  # the comment lines right above the current line
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        text = line.strip()
        if text.startswith("#"):
            comments.append(text)
            continue
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        while open_keys and open_keys[-1][0] >= indent:
            open_keys.pop()
        if re.match(r"^[\w.\-]+:", text):
            covered = any(whole for _, whole in open_keys)
            if not (covered or comments or " # " in text):
                undocumented.append(f"values.yaml:{number}: {text}")
            open_keys.append((indent, any(c.startswith("# --") for c in comments)))
        comments = []
    assert not undocumented, "\n".join(undocumented)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_container_is_a_valid_vigil_command(render: Render, scenario: str) -> None:
    commands = [c["args"] for _, c in vigil_containers(render(scenario))
                if not c.get("command")]  # `command` overrides the vigil entrypoint (the spool chown)
    assert commands
    for args in commands:
        if args[0] in PENDING_COMMANDS:
            continue
        parse_vigil_args(args)  # raises on an unknown command, option or choice


def test_pending_commands_are_still_missing_from_the_cli() -> None:
    """The chart already runs `vigil ui`; once the CLI has it, its flags must be checked like the rest."""
    for command, issue in PENDING_COMMANDS.items():
        assert cli.get_command(click.Context(cli), command) is None, (
            f"`vigil {command}` exists now ({issue}): remove it from PENDING_COMMANDS")


# --- the worker ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_is_a_statefulset_named_by_pod_with_its_own_state_volume(render: Render, scenario: str) -> None:
    manifest = render(scenario)
    assert manifest.component("Deployment", "worker") is None
    worker = manifest.component("StatefulSet", "worker")
    assert worker is not None
    (container,) = containers(worker)
    params = parse_vigil_args(container["args"]).params
    assert params["instance_id"] == "$(POD_NAME)"
    assert env_of(container)["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    state_dir = env_of(container)["VIGIL_STATE_DIR"]["value"]
    assert {"name": "state", "mountPath": state_dir} in container["volumeMounts"]
    headless = manifest.component("Service", "worker")
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    assert worker["spec"]["serviceName"] == headless["metadata"]["name"]


@pytest.mark.parametrize(("scenario", "claim_size"), [
    ("default", "10Gi"),
    ("exactly-once-with-sasl", "50Gi"),
    ("everything-enabled", "10Gi"),
])
def test_worker_state_is_a_claim_per_pod(render: Render, scenario: str, claim_size: str) -> None:
    worker = render(scenario).component("StatefulSet", "worker")
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == claim_size
    assert "state" not in {v["name"] for v in pod_spec(worker)["volumes"]}


def test_worker_without_persistence_keeps_state_in_an_emptydir(render: Render) -> None:
    worker = render("minimal-external-registry").component("StatefulSet", "worker")
    assert "volumeClaimTemplates" not in worker["spec"]
    assert {"name": "state", "emptyDir": {}} in pod_spec(worker)["volumes"]


@pytest.mark.parametrize(("scenario", "guarantee"), [
    ("default", "at_least_once"),
    ("exactly-once-with-sasl", "exactly_once"),
])
def test_worker_guarantee_comes_from_values(render: Render, scenario: str, guarantee: str) -> None:
    (container,) = containers(render(scenario).component("StatefulSet", "worker"))
    assert parse_vigil_args(container["args"]).params["guarantee"] == guarantee


def test_worker_rules_come_from_a_configmap_volume_the_worker_hot_reloads(render: Render) -> None:
    manifest = render("everything-enabled")
    worker = manifest.component("StatefulSet", "worker")
    (container,) = containers(worker)
    rules_dir = env_of(container)["VIGIL_RULES_DIR"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == rules_dir]
    assert "subPath" not in mount  # subPath mounts never see ConfigMap updates
    (volume,) = [v for v in pod_spec(worker)["volumes"] if v["name"] == mount["name"]]
    rules = manifest.component("ConfigMap", "rules")
    assert volume["configMap"]["name"] == rules["metadata"]["name"]
    assert set(rules["data"]) == {"load.yaml", "heartbeat.yaml"}
    assert "checksum/rules" not in worker["spec"]["template"]["metadata"]["annotations"]  # no restart on edits


def test_rules_from_an_existing_configmap(render: Render) -> None:
    manifest = render(values={"rules": {"existingConfigMap": "team-rules"}})
    assert manifest.component("ConfigMap", "rules") is None
    worker = manifest.component("StatefulSet", "worker")
    assert {"name": "rules", "configMap": {"name": "team-rules"}} in pod_spec(worker)["volumes"]


def test_rendered_rule_files_compile(render: Render, tmp_path: Path) -> None:
    """Rules given in values, as a mapping or as text with Jinja templates, reach the worker intact."""
    rules = render("everything-enabled").component("ConfigMap", "rules")
    for name, text in rules["data"].items():
        (tmp_path / name).write_text(text)
    result = RuleSetLoader(tmp_path).reload()
    assert result.errors == []
    assert "{{ event.subject }}" in rules["data"]["heartbeat.yaml"]


def test_pod_disruption_budget_covers_the_worker_pods(render: Render) -> None:
    manifest = render("default")
    pdb = manifest.component("PodDisruptionBudget", "worker")
    worker = manifest.component("StatefulSet", "worker")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == worker["spec"]["selector"]


# --- components on and off ----------------------------------------------------------------------

#: component -> (values that switch it, the objects it brings as (kind, component label)).
COMPONENTS = {
    "executor": ({"executor": {"enabled": "?"}},
                 [("StatefulSet", "executor"), ("ConfigMap", "executor"), ("Service", "executor")]),
    "bridge-http": ({"bridges": {"http": {"enabled": "?"}}},
                    [("Deployment", "bridge-http"), ("Service", "bridge-http")]),
    "bridge-syslog": ({"bridges": {"syslog": {"enabled": "?"}}},
                      [("Deployment", "bridge-syslog"), ("Service", "bridge-syslog")]),
    "beacons": ({"beacons": {"enabled": "?"}}, [("DaemonSet", "beacons"), ("ConfigMap", "beacons")]),
    "servicemonitor": ({"serviceMonitor": {"enabled": "?"}}, [("ServiceMonitor", "worker")]),
    "topics-job": ({"jobs": {"topics": {"enabled": "?"}}}, [("Job", "topics")]),
    "schemas-job": ({"jobs": {"schemas": {"enabled": "?"}}}, [("Job", "schemas")]),
    "ui": ({"ui": {"enabled": "?"}}, [("Deployment", "ui"), ("Service", "ui")]),
    "ui-ingress": ({"ui": {"enabled": "?", "ingress": {"enabled": "?"}}}, [("Ingress", "ui")]),
    "networkpolicy": ({"networkPolicy": {"enabled": "?"}},
                      [("NetworkPolicy", "worker"), ("NetworkPolicy", "registry")]),
    "executor-pdb": ({"executor": {"podDisruptionBudget": {"enabled": "?"}}}, [("PodDisruptionBudget", "executor")]),
    "forwarder": ({"forwarder": {"enabled": "?"}},
                  [("StatefulSet", "forwarder"), ("Service", "forwarder"), ("PodDisruptionBudget", "forwarder")]),
}


def _switch(values: dict[str, Any], enabled: bool) -> dict[str, Any]:
    return {k: _switch(v, enabled) if isinstance(v, dict) else enabled for k, v in values.items()}


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_component_is_rendered_only_when_enabled(render: Render, component: str, enabled: bool) -> None:
    switch, objects = COMPONENTS[component]
    manifest = render(values=_switch(switch, enabled))
    for kind, label in objects:
        present = manifest.component(kind, label) is not None
        assert present is enabled, f"{kind} {label}: present={present} with {component} enabled={enabled}"


@pytest.mark.parametrize(("scenario", "expected"), [
    ("default", {"registry"}),
    ("minimal-external-registry", set()),
    ("everything-enabled", {"registry", "bridge-http", "bridge-syslog", "ui"}),
])
def test_deployments_per_scenario(render: Render, scenario: str, expected: set[str]) -> None:
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]
                   for d in render(scenario).of_kind("Deployment")}
    assert deployments == expected


def test_syslog_service_takes_udp_and_tcp_on_one_port_and_tls_on_its_own(render: Render) -> None:
    service = render("everything-enabled").component("Service", "bridge-syslog")
    ports = {(p["protocol"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {("UDP", 514, "syslog-udp"), ("TCP", 514, "syslog-tcp"), ("TCP", 6514, "syslog-tls")}
    assert service["spec"]["externalTrafficPolicy"] == "Local"


# --- schema registry ----------------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "runs_registry", "url"), [
    ("default", True, f"http://rel-vigil-registry.{NAMESPACE}.svc:8081"),
    ("minimal-external-registry", False, "https://registry.example.com:8081"),
])
def test_registry_runs_only_without_an_external_url(render: Render, scenario: str, runs_registry: bool,
                                                    url: str) -> None:
    manifest = render(scenario)
    assert (manifest.component("Deployment", "registry") is not None) is runs_registry
    assert (manifest.component("Service", "registry") is not None) is runs_registry
    env = manifest.component("ConfigMap", "config")["data"]
    assert env["VIGIL_SCHEMA_REGISTRY_URL"] == url


def test_registry_deployment_serves_on_its_service_port(render: Render) -> None:
    manifest = render("default")
    (container,) = containers(manifest.component("Deployment", "registry"))
    listen = parse_vigil_args(container["args"]).params["listen"]
    (service_port,) = manifest.component("Service", "registry")["spec"]["ports"]
    (container_port,) = container["ports"]
    assert listen == f"0.0.0.0:{container_port['containerPort']}"
    assert service_port["targetPort"] == container_port["name"]


def test_external_registry_password_comes_from_its_secret(render: Render) -> None:
    manifest = render("minimal-external-registry")
    assert manifest.component("ConfigMap", "config")["data"]["VIGIL_SCHEMA_REGISTRY_USER"] == "vigil"
    for _, container in vigil_containers(manifest):
        ref = env_of(container)["VIGIL_SCHEMA_REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "registry-credentials", "key": "password"}


# --- executor, beacons, topics: rendered configs load in Vigil ----------------------------------


def test_executor_config_loads_with_the_password_from_the_environment(
        render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = render("everything-enabled")
    deployment = manifest.component("StatefulSet", "executor")
    (container,) = containers(deployment)
    config_path = Path(parse_vigil_args(container["args"]).params["config_path"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    configmap = manifest.component("ConfigMap", "executor")
    assert {"name": mount["name"], "configMap": {"name": configmap["metadata"]["name"]}} in (
        pod_spec(deployment)["volumes"])
    local = tmp_path / config_path.name
    local.write_text(configmap["data"][config_path.name])
    assert env_of(container)["VIGIL_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "smtp-password"
    monkeypatch.setenv("VIGIL_SMTP_PASSWORD", "from-the-secret")
    config = load_executor_config(local)
    assert config.smtp is not None and config.smtp.password.get_secret_value() == "from-the-secret"
    assert set(config.commands) == {"disk-usage", "restart-service"}
    assert config.require_signature is True
    assert config.plugins == ["my_company.actions"]


def test_beacons_config_names_the_node_and_spools_on_the_host(
        render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = render("everything-enabled")
    daemonset = manifest.component("DaemonSet", "beacons")
    (container,) = containers(daemonset)
    assert env_of(container)["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    local = tmp_path / "beacons.yaml"
    local.write_text(manifest.component("ConfigMap", "beacons")["data"]["beacons.yaml"])
    monkeypatch.setenv("NODE_NAME", "node-7")
    config = load_beacons_config(local)
    assert config.subject == "node-7"
    assert config.tags == {"cluster": "prod"}
    (spool_mount,) = [m for m in container["volumeMounts"] if m["name"] == "spool"]
    assert str(config.spool.dir) == spool_mount["mountPath"]
    volumes = {v["name"]: v for v in pod_spec(daemonset)["volumes"]}
    assert volumes["spool"]["hostPath"] == {"path": "/var/lib/vigil/beacon-spool", "type": "DirectoryOrCreate"}


def test_beacons_see_the_host_through_read_only_mounts(render: Render) -> None:
    daemonset = render("everything-enabled").component("DaemonSet", "beacons")
    spec = pod_spec(daemonset)
    assert spec["hostPID"] is True
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {"host-proc": "/proc", "host-sys": "/sys", "host-path-0": "/var/log", "host-path-1": "/",
                          "spool": "/var/lib/vigil/beacon-spool"}
    (container,) = containers(daemonset)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["host-proc"] == {"name": "host-proc", "mountPath": "/host/proc", "readOnly": True}
    assert env_of(container)["VIGIL_HOST_PROC"]["value"] == "/host/proc"
    assert mounts["host-sys"]["mountPath"] == env_of(container)["VIGIL_HOST_SYS"]["value"] == "/host/sys"
    assert (mounts["host-path-0"]["mountPath"], mounts["host-path-1"]["mountPath"]) == ("/host/var/log", "/host/root")
    for name in host_paths.keys() - {"spool"}:  # only the spool is written
        assert mounts[name]["readOnly"] is True, name


def test_beacons_share_no_host_namespace_by_default(render: Render) -> None:
    spec = pod_spec(render(values={"beacons": {"enabled": True}}).component("DaemonSet", "beacons"))
    assert spec["hostPID"] is False and spec["hostNetwork"] is False and "dnsPolicy" not in spec


def _hook(obj: dict[str, Any]) -> tuple[set[str], int, set[str]]:
    annotations = obj["metadata"]["annotations"]
    return (set(annotations["helm.sh/hook"].split(",")), int(annotations["helm.sh/hook-weight"]),
            set(annotations["helm.sh/hook-delete-policy"].split(",")))


@pytest.mark.parametrize("scenario", ["default", "exactly-once-with-sasl"])
def test_topics_then_schemas_jobs_run_after_install_and_before_upgrade(render: Render, scenario: str) -> None:
    manifest = render(scenario)
    topics, schemas = manifest.component("Job", "topics"), manifest.component("Job", "schemas")
    (topics_hooks, topics_weight, policy), (schemas_hooks, schemas_weight, _) = _hook(topics), _hook(schemas)
    assert topics_hooks == schemas_hooks == {"post-install", "pre-upgrade"}
    assert topics_weight < schemas_weight  # helm runs hooks by weight, waiting for each Job
    assert "before-hook-creation" in policy
    steps = []
    for job in (topics, schemas):
        assert pod_spec(job)["restartPolicy"] == "Never"
        (container,) = containers(job)
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        steps.append(container["args"])
    assert steps == [["topics", "apply"], ["schemas", "register"]]


def test_hook_jobs_carry_the_settings_inline(render: Render) -> None:
    """A pre-upgrade hook runs before the shared ConfigMap is updated: the Jobs must use the new values."""
    manifest = render("exactly-once-with-sasl")
    settings = manifest.component("ConfigMap", "config")["data"]
    for component in ("topics", "schemas"):
        (container,) = containers(manifest.component("Job", component))
        assert "envFrom" not in container
        env = env_of(container)
        assert {name: env[name]["value"] for name in settings} == settings
        assert env["VIGIL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-credentials"


def test_a_refused_schema_fails_the_schemas_job_at_once(render: Render) -> None:
    from app.registry.schemas_cli import EXIT_REFUSED

    job = render("default").component("Job", "schemas")
    (container,) = containers(job)
    (fail_rule, ignore_rule) = job["spec"]["podFailurePolicy"]["rules"]
    assert fail_rule == {"action": "FailJob", "onExitCodes": {
        "containerName": container["name"], "operator": "In", "values": [EXIT_REFUSED]}}
    assert ignore_rule["action"] == "Ignore"  # evictions do not count against backoffLimit
    assert job["spec"]["backoffLimit"] > 0  # a registry still starting is retried


def test_custom_topics_file_is_mounted_and_covers_every_topic(render: Render, tmp_path: Path) -> None:
    manifest = render("exactly-once-with-sasl")
    job = manifest.component("Job", "topics")
    (apply,) = containers(job)
    path = Path(env_of(apply)["VIGIL_TOPICS_FILE"]["value"])
    (mount,) = [m for m in apply["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert mount["readOnly"] is True
    configmap = manifest.component("ConfigMap", "topics")
    assert _hook(configmap)[0] == _hook(job)[0] and _hook(configmap)[1] < _hook(job)[1]  # there before the Job
    local = tmp_path / path.name
    local.write_text(configmap["data"][path.name])
    custom = {t.name: t for t in load_topics_file(local).topics}
    shipped = {t.name for t in load_topics_file(REPO / "topics.yaml").topics}
    assert set(custom) == shipped
    assert {t.replication for t in custom.values()} == {3}


def test_chart_and_image_agree_on_user_and_data_files(render: Render) -> None:
    """The Dockerfile's user is the one the chart runs as; the Jobs' default paths are in the image."""
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = int(re.search(r"^ARG VIGIL_UID=(\d+)$", dockerfile, re.MULTILINE).group(1))
    image_env = dict(re.findall(r"(VIGIL_[A-Z_]+)=(\S+)", dockerfile))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == values["containerSecurityContext"]["runAsUser"] == uid
    manifest = render("default")
    (apply,) = containers(manifest.component("Job", "topics"))
    (register,) = containers(manifest.component("Job", "schemas"))
    assert env_of(apply)["VIGIL_TOPICS_FILE"]["value"] == image_env["VIGIL_TOPICS_FILE"]
    assert env_of(register)["VIGIL_SCHEMAS_DIR"]["value"] == image_env["VIGIL_SCHEMAS_DIR"]


# --- probes and metrics -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "component", "ready_path"), [
    ("StatefulSet", "worker", "/readyz"),  # 503 while a partition's state is restored
    ("StatefulSet", "executor", "/readyz"),  # 503 while the action ledger is restored
    ("Deployment", "bridge-http", "/healthz"),
    ("Deployment", "ui", "/readyz"),  # 503 until status and silences were read
])
def test_readiness_on_the_port_the_process_serves(render: Render, kind: str, component: str,
                                                  ready_path: str) -> None:
    (container,) = containers(render("everything-enabled").component(kind, component))
    params = parse_vigil_args(container["args"]).params
    listen = params.get("http_listen") or params["listen"]
    (port,) = container["ports"]
    assert listen == f"0.0.0.0:{port['containerPort']}"
    assert container["readinessProbe"]["httpGet"] == {"path": ready_path, "port": port["name"]}
    # Liveness never waits on a restore: /healthz answers while the loop runs.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}


@pytest.mark.parametrize("component", ["worker", "executor", "bridge-http"])
def test_service_monitor_scrapes_metrics_of_a_service_with_that_port(render: Render, component: str) -> None:
    manifest = render("everything-enabled")
    monitor = manifest.component("ServiceMonitor", component)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    service = manifest.component("Service", component)
    labels = service["metadata"]["labels"]
    assert all(labels[k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_service_monitor_is_off_by_default(render: Render) -> None:
    assert render("default").of_kind("ServiceMonitor") == []


# --- names and labels ---------------------------------------------------------------------------


def test_names_fit_kubernetes_limits_for_the_longest_release_name(render: Render) -> None:
    assert len(LONGEST_RELEASE) == 53
    manifest = render("everything-enabled", release=LONGEST_RELEASE)
    for obj in manifest.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), f"{obj['kind']} {name}"
    for stateful in manifest.of_kind("StatefulSet"):  # worker and executor
        assert len(stateful["metadata"]["name"]) <= 52  # pods get controller-revision-hash=<name>-<10 chars>
    for kind in {obj["kind"] for obj in manifest.objects}:
        names = [obj["metadata"]["name"] for obj in manifest.of_kind(kind)]
        assert len(names) == len(set(names)), f"{kind} names collide after cutting: {names}"
    for workload in manifest.workloads():
        for container in [*containers(workload, init=True), *containers(workload)]:
            assert all(len(p["name"]) <= 15 for p in container.get("ports", [])), container["name"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_use_only_stable_labels_and_match_their_pods(render: Render, scenario: str) -> None:
    manifest = render(scenario)
    stable = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
    for workload in manifest.workloads():
        if workload["kind"] == "Job":
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        assert set(selector) == stable
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in manifest.workloads()]
    for service in manifest.of_kind("Service"):
        selector = service["spec"]["selector"]
        assert set(selector) == stable
        assert any(selector.items() <= labels.items() for labels in pods), service["metadata"]["name"]


@pytest.mark.parametrize(("scenario", "mentions"), [
    ("default", ["StatefulSet rel-vigil-worker x2", "rel-vigil-executor", "Vigil's own", "Job"]),
    ("minimal-external-registry", ["https://registry.example.com:8081", "topics Job is disabled"]),
    ("exactly-once-with-sasl", ["SASL_SSL, SCRAM-SHA-512 as vigil", "exactly_once", "Topic prefix:    prod."]),
    ("everything-enabled", ["HTTP bridge", "syslog bridge", "DaemonSet rel-vigil-beacons", "given inline"]),
    ("scaled-out", ["StatefulSet rel-vigil-forwarder x2 (stages routes, sinks; the workers run pipeline, rules, "
                    "members)"]),
])
def test_notes_describe_what_was_installed(render_notes: Any, scenario: str, mentions: list[str]) -> None:
    notes = render_notes(scenario)
    for text in mentions:
        assert text in notes


@pytest.mark.parametrize("component", ["worker", "executor"])
def test_static_members_named_by_pod_with_the_session_timeout_from_values(render: Render, component: str) -> None:
    """Each pod is a static group member (instance id = pod name, from its ordinal): a restart within
    the session timeout moves no partition."""
    manifest = render(values={component: {"sessionTimeoutMs": 90000}})
    (container,) = containers(manifest.require("StatefulSet", component))
    params = parse_vigil_args(container["args"]).params
    assert params["instance_id"] == "$(POD_NAME)"
    assert params["session_timeout_ms"] == 90000
