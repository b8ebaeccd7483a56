"""The Helm chart's security: non-root containers on read-only roots, and secrets that reach
Vigil's processes only through Secrets (`${env:...}` / `*_FILE` references), never through
ConfigMaps or values rendered in plain text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from app.config import load_settings, resolve_secret_refs
from tests.unit.helm.chart_support import (
    HelmFailed,
    Render,
    ci_values,
    containers,
    env_of,
    pod_spec,
    scenario_names,
    vigil_containers,
)

# The first test may build helm with `make helm` (minutes); every helm call after that is quick.
pytestmark = pytest.mark.timeout(1800)

SCENARIOS = scenario_names()

#: Inline secrets of ci/everything-enabled-values.yaml, by where they are set.
INLINE_SECRETS = {
    "actionSigningKey": ("actionSigningKey", "value"),
    "smtpPassword": ("executor", "smtpPassword", "value"),
    "apiToken": ("apiToken", "value"),
    "githubSecret": ("bridges", "http", "githubSecret", "value"),
}


#: An inline API token long enough for Vigil (16 bytes at least).
TOKEN = "t0k3n-0123456789abcdef"


def _dig(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_vigil_containers_run_as_non_root_on_a_read_only_root(render: Render, scenario: str) -> None:
    for workload in render(scenario).workloads():
        pod_context = pod_spec(workload).get("securityContext", {})
        assert pod_context["runAsNonRoot"] is True
        for container in containers(workload) + [c for c in containers(workload, init=True)
                                                 if c["name"] != "spool-owner"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context.get("runAsNonRoot", pod_context["runAsNonRoot"]) is True, where
            assert context.get("runAsUser", pod_context.get("runAsUser")) != 0, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where


def test_spool_owner_is_the_only_root_container_and_can_only_chown(render: Render) -> None:
    manifest = render("everything-enabled")
    roots = [(w["metadata"]["name"], c) for w in manifest.workloads()
             for c in [*containers(w, init=True), *containers(w)] if c["securityContext"].get("runAsUser") == 0]
    assert [c["name"] for _, c in roots] == ["spool-owner"]
    (_, chown), = roots
    assert chown["command"][0] == "chown"
    assert chown["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert chown["securityContext"]["readOnlyRootFilesystem"] is True
    assert chown["securityContext"]["allowPrivilegeEscalation"] is False


def test_beacons_without_spool_fix_have_no_root_container(render: Render) -> None:
    beacons = render(values={"beacons": {"enabled": True, "spool": {"fixPermissions": False}}})
    assert "initContainers" not in pod_spec(beacons.component("DaemonSet", "beacons"))


def test_no_secret_value_appears_in_plain_text(render: Render) -> None:
    """Inline secrets go to the chart's Secret (base64) and nowhere else, least of all ConfigMaps."""
    values = ci_values("everything-enabled")
    manifest = render("everything-enabled")
    secret = manifest.component("Secret", "secrets")
    stored = {base64.b64decode(v).decode() for v in secret["data"].values()}
    configmaps = "\n".join(manifest.configmap_data().values())
    everything = yaml.safe_dump_all([o for o in manifest.objects if o["kind"] != "Secret"])
    for name, path in INLINE_SECRETS.items():
        value = _dig(values, path)
        assert value in stored, name
        assert value not in configmaps, name
        assert value not in everything, name


@pytest.mark.parametrize(("values", "stored_keys"), [
    ({"apiToken": {"value": TOKEN}, "worker": {"enabled": False}, "executor": {"enabled": False}}, None),
    ({"apiToken": {"value": TOKEN}, "worker": {"enabled": False}, "executor": {"enabled": False},
      "bridges": {"http": {"enabled": True}}}, {"api-token"}),
    ({"apiToken": {"value": TOKEN}}, {"api-token"}),
    ({"apiToken": {"value": TOKEN, "existingSecret": "mine"}}, None),
    ({"executor": {"enabled": False, "smtpPassword": {"value": "pw"}}}, None),
    ({"actionSigningKey": {"value": "0123456789abcdef"}}, {"action-signing-key"}),
], ids=["no-http-component", "bridge-on", "worker-on", "existing-secret-wins", "executor-off", "signing-key"])
def test_chart_secret_holds_only_inline_secrets_of_enabled_components(
        render: Render, values: dict[str, Any], stored_keys: set[str] | None) -> None:
    secret = render(values=values).component("Secret", "secrets")
    assert (set(secret["data"]) if secret else None) == stored_keys


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_configmaps_hold_only_secret_references(render: Render, scenario: str) -> None:
    """Password-like settings in rendered config files are ${env:...}/${file:...} references."""
    for where, text in render(scenario).configmap_data().items():
        for line in text.replace(",", "\n").splitlines():
            key, sep, value = line.partition(":")
            if sep and any(word in key.lower() for word in ("password", "secret")):
                assert value.strip().strip('"').startswith(("${env:", "${file:")), f"{where}: {line.strip()}"


def test_sasl_password_reaches_librdkafka_from_the_existing_secret(render: Render) -> None:
    manifest = render("exactly-once-with-sasl")
    conf = json.loads(manifest.component("ConfigMap", "config")["data"]["VIGIL_KAFKA_CONFIG"])
    assert conf["sasl.password"] == "${env:VIGIL_KAFKA_SASL_PASSWORD}"
    assert (conf["security.protocol"], conf["sasl.mechanism"], conf["sasl.username"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "vigil")
    running = vigil_containers(manifest)
    assert len(running) >= 5
    for workload, container in running:
        ref = env_of(container)["VIGIL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "kafka-credentials", "key": "sasl-password"}, workload


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kafka_config_is_json_that_vigil_settings_accept(render: Render, scenario: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = render(scenario).component("ConfigMap", "config")["data"]
    conf = json.loads(env["VIGIL_KAFKA_CONFIG"])
    assert isinstance(conf, dict)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VIGIL_KAFKA_SASL_PASSWORD", "from-the-secret")
    settings = load_settings()
    assert settings.kafka_bootstrap == env["VIGIL_KAFKA_BOOTSTRAP"]
    assert settings.kafka_config == conf
    if "sasl.password" in conf:  # ${file:...} references name files that exist only in the pod
        assert resolve_secret_refs(conf["sasl.password"], where="sasl.password") == "from-the-secret"


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka": {"config": {"sasl.password": "hunter2"}}}, "kafka.config.sasl.password: give secrets as"),
    ({"kafka": {"config": {"ssl.key.password": "hunter2"}}}, "kafka.config.ssl.key.password: give secrets as"),
    ({"kafka": {"config": {"sasl.oauthbearer.client.secret": "s"}}}, "kafka.config.sasl.oauthbearer.client.secret"),
    ({"kafka": {"config": {"ssl": {"ca": {"location": "/x"}}}}}, "at '/kafka/config/ssl': got object"),
    ({"kafka": {"sasl": {"enabled": True, "username": "vigil"}}}, "kafka.sasl.password.existingSecret"),
    ({"kafka": {"bootstrap": ""}}, "at '/kafka/bootstrap'"),
    ({"actionSigningKey": {"value": "short"}}, "at least 16 random bytes"),
    ({"executor": {"config": {"smtp": {"host": "mx", "password": "hunter2"}}}}, "never inline"),
    ({"executor": {"smtpPassword": {"value": "pw"}}}, "executor.config.smtp is not"),
    ({"executor": {"config": {"require_signature": True}}}, "actionSigningKey is not set"),
    ({"worker": {"guarantee": "at_most_once"}}, "at '/worker/guarantee'"),
    ({"worker": {"replica": 3}}, "at '/worker': additional properties 'replica' not allowed"),
    ({"worker": {"replicas": "3"}}, "at '/worker/replicas': got string, want integer"),
    ({"bridges": {"syslog": {"service": {"type": "Public"}}}}, "at '/bridges/syslog/service/type'"),
    ({"ui": {"ingress": {"hosts": [{"hostname": "x"}]}}}, "at '/ui/ingress/hosts/0'"),
    ({"rules": {"files": {"../evil.yaml": "rules: []"}}}, "is not a rule file path"),
    ({"rules": {"files": {"data/role/../x.yaml": "a: 1"}}}, "is not a rule file path"),
    ({"rules": {"files": {"gates/x.yaml": "gates: []", "gates__x.yaml": "rules: []"}}},
     "would share the ConfigMap key \"gates__x.yaml\""),
    ({"rules": {"existingFolders": {"Gates": "cm"}}}, "rules.existingFolders: \"Gates\" is not a folder name"),
    ({"rules": {"files": {"gates/x.yaml": "gates: []"}, "existingFolders": {"gates": "team-gates"}}},
     "which rules.existingFolders mounts from ConfigMap team-gates"),
    ({"apiToken": {"value": "short"}}, "apiToken.value: use at least 16 random bytes"),
    ({"apiToken": {"metricsOpen": True}}, "apiToken.metricsOpen is set but apiToken is not"),
    ({"bridges": {"http": {"apiToken": {"value": TOKEN}}}}, "at '/bridges/http': additional properties 'apiToken'"),
    ({"bridges": {"syslog": {"enabled": True, "tls": {"enabled": True}}}}, "set bridges.syslog.tls.existingSecret"),
    ({"bridges": {"syslog": {"enabled": True, "tls": {"enabled": True, "existingSecret": "s", "port": 5514}}}},
     "give TLS a port of its own"),
    ({"bridges": {"syslog": {"tls": {"clientCA": {"existingSecret": "a", "existingConfigMap": "b"}}}}},
     "set existingSecret or existingConfigMap, not both"),
    ({"ui": {"enabled": True, "persistence": {"enabled": True}}}, "set ui.replicas to 1 (it is 2)"),
    ({"ui": {"enabled": True}, "worker": {"enabled": False}}, "give the workers' URLs in ui.workers"),
    ({"ui": {"workers": ["ftp://x"]}}, "at '/ui/workers/0'"),
    ({"worker": {"standbyReplicas": -1}}, "at '/worker/standbyReplicas'"),
    ({"worker": {"sinks": {"graphit": {"enabled": True}}}}, "invalid propertyName 'graphit'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unsafe_or_invalid_values_are_refused(render: Render, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(values=values)
    assert message in str(failed.value)


@pytest.mark.parametrize(("scenario", "component", "env_name", "volume"), [
    ("everything-enabled", "worker", "VIGIL_ACTION_SIGNING_KEY_FILE", "action-signing-key"),
    ("everything-enabled", "executor", "VIGIL_ACTION_SIGNING_KEY_FILE", "action-signing-key"),
    ("exactly-once-with-sasl", "worker", "VIGIL_ACTION_SIGNING_KEY_FILE", "action-signing-key"),
    ("everything-enabled", "bridge-http", "VIGIL_GITHUB_SECRET_FILE", "github-secret"),
    *[("everything-enabled", component, "VIGIL_API_TOKEN_FILE", "api-token")
      for component in ("worker", "executor", "bridge-http", "ui")],
])
def test_secret_file_variables_point_into_their_mounted_secret(render: Render, scenario: str, component: str,
                                                               env_name: str, volume: str) -> None:
    manifest = render(scenario)
    (workload,) = [w for w in manifest.workloads()
                   if w["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    (container,) = containers(workload)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume]
    (secret_volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == volume]
    (item,) = secret_volume["secret"]["items"]
    assert env_of(container)[env_name]["value"] == f"{mount['mountPath']}/{item['path']}"
    assert mount["readOnly"] is True


def test_signing_key_is_given_only_to_the_worker_and_executor(render: Render) -> None:
    holders = {w["metadata"]["labels"]["app.kubernetes.io/component"]
               for w in render("everything-enabled").workloads()
               if any("VIGIL_ACTION_SIGNING_KEY_FILE" in env_of(c) for c in containers(w))}
    assert holders == {"worker", "executor"}


