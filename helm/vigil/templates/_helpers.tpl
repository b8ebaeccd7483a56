{{/*
Helpers of the Vigil chart. Every name is prefixed with the chart name ("vigil.").
*/}}

{{/* The chart name, overridable. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name every resource name starts with: <release>-<chart>, or the release name alone when
it already contains the chart name. Cut to 63 characters (the DNS label limit).
*/}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one component's resources: <fullname>-<component>. The full name is cut first, so the
component suffix always survives and names of different components never collide.
Call with (dict "root" $ "component" "worker" "max" 63); "max" is optional (default 63).
*/}}
{{- define "vigil.componentName" -}}
{{- $max := .max | default 63 | int }}
{{- $room := sub $max (add 1 (len .component)) | int }}
{{- $base := include "vigil.fullname" .root | trunc $room | trimSuffix "-" }}
{{- printf "%s-%s" $base .component | trunc $max | trimSuffix "-" }}
{{- end }}

{{/*
The worker StatefulSet's name, cut to 52 characters: Kubernetes labels its pods with
controller-revision-hash=<name>-<10-char hash>, which must stay within 63.
*/}}
{{- define "vigil.workerName" -}}
{{- include "vigil.componentName" (dict "root" . "component" "worker" "max" 52) }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Never change these: selectors of Deployments, StatefulSets and
DaemonSets are immutable. Call with (dict "root" $ "component" "worker").
*/}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector of every pod of this release (any component): for NetworkPolicy peers. Stable labels only.
*/}}
{{- define "vigil.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* All labels of one component's resources. Call with (dict "root" $ "component" "worker"). */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" .root }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/part-of: vigil
{{- with .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount pods run as. */}}
{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference. */}}
{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* True ("true") when the chart runs Vigil's own schema registry (no external URL given). */}}
{{- define "vigil.registry.enabled" -}}
{{- if not .Values.schemaRegistry.url }}true{{ end }}
{{- end }}

{{/* The schema registry URL every component uses. */}}
{{- define "vigil.registry.url" -}}
{{- if .Values.schemaRegistry.url }}
{{- .Values.schemaRegistry.url | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "vigil.componentName" (dict "root" . "component" "registry")) .Release.Namespace .Values.registry.service.port }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap with the settings shared by every process (VIGIL_* variables). */}}
{{- define "vigil.envConfigMapName" -}}
{{- include "vigil.componentName" (dict "root" . "component" "env") }}
{{- end }}

{{/* Name of the Secret the chart creates for secrets given inline in values. */}}
{{- define "vigil.secretName" -}}
{{- include "vigil.componentName" (dict "root" . "component" "secrets") }}
{{- end }}

{{/*
The URL of every pod of this release's worker StatefulSet, by its stable DNS name under the
headless Service (each worker answers only for its own partitions, so a client asks each one).
A list, as YAML; empty without workers.
*/}}
{{- define "vigil.worker.urls" -}}
{{- $urls := list }}
{{- if .Values.worker.enabled }}
{{- $statefulset := include "vigil.workerName" . }}
{{- $service := include "vigil.componentName" (dict "root" . "component" "worker") }}
{{- range $i := until (int .Values.worker.replicas) }}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc:%v" $statefulset $i $service $.Release.Namespace $.Values.worker.httpPort) }}
{{- end }}
{{- end }}
{{- toYaml $urls }}
{{- end }}

{{/* The worker URLs `vigil ui` asks (`--worker`): ui.workers, or every pod of this release's workers. */}}
{{- define "vigil.ui.workerUrls" -}}
{{- if .Values.ui.workers }}
{{- toYaml .Values.ui.workers }}
{{- else }}
{{- include "vigil.worker.urls" . }}
{{- end }}
{{- end }}

{{/*
The rules directory (VIGIL_RULES_DIR) every container that reads rules mounts: the worker (it
hot-reloads them), the UI (backtests compare with them) and the executor (runbooks started by
rules are defined there). A ConfigMap volume without subPath, so edits reach running pods.
Orchestration's files live in folders of it (gates/, runbooks/): `rules.files` keys with a folder
(the ConfigMap key is the path with "/" as "__", mapped back by the volume's items), or existing
ConfigMaps mounted as folders (`rules.existingFolders`).
*/}}
{{- define "vigil.rules.dir" -}}
/etc/vigil/rules
{{- end }}

{{/* Does this release's pods read the rules directory (so the rules ConfigMap is made)? "true" or "". */}}
{{- define "vigil.rules.used" -}}
{{- if or .Values.worker.enabled .Values.executor.enabled .Values.ui.enabled }}true{{ end }}
{{- end }}

{{/*
`rules.files` as a YAML list of {file, key}: the path in the rules directory (in folders or not,
e.g. gates/deploy-web.yaml, data/role/db.yaml; .json for lookup data) and its ConfigMap key
(ConfigMap keys cannot hold "/"). Fails on a bad name or two paths with the same key.
*/}}
{{- define "vigil.rules.fileKeys" -}}
{{- $entries := list }}
{{- $keys := dict }}
{{- range $file, $_ := .Values.rules.files }}
{{- if not (regexMatch "^([A-Za-z0-9][A-Za-z0-9_-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*\\.(ya?ml|json)$" $file) }}
{{- fail (printf "rules.files: %q is not a rule file path (letters, digits, . _ -, ending in .yaml or .json; folders allowed, e.g. gates/deploy-web.yaml, data/role/db.yaml)" $file) }}
{{- end }}
{{- $key := replace "/" "__" $file }}
{{- if hasKey $keys $key }}
{{- fail (printf "rules.files: %q and %q would share the ConfigMap key %q; rename one" (get $keys $key) $file $key) }}
{{- end }}
{{- $_ := set $keys $key $file }}
{{- $entries = append $entries (dict "file" $file "key" $key) }}
{{- end }}
{{- toYaml $entries }}
{{- end }}

{{- define "vigil.rules.volume" -}}
- name: rules
  configMap:
    name: {{ include "vigil.rulesConfigMapName" . }}
    {{- if not .Values.rules.existingConfigMap }}
    {{- $entries := include "vigil.rules.fileKeys" . | fromYamlArray }}
    {{- $nested := false }}
    {{- range $entries }}{{ if contains "/" .file }}{{ $nested = true }}{{ end }}{{ end }}
    {{- if $nested }}
    # Files in folders (gates/, runbooks/, routes/, data/...): each key back to its path.
    items:
      {{- range $entries }}
      - {key: {{ .key | quote }}, path: {{ .file | quote }}}
      {{- end }}
    {{- end }}
    {{- end }}
{{- range $folder, $configMap := .Values.rules.existingFolders }}
- name: rules-{{ $folder }}
  configMap:
    name: {{ $configMap }}
{{- end }}
{{- end }}

{{- define "vigil.rules.volumeMount" -}}
- name: rules
  mountPath: {{ include "vigil.rules.dir" . }}
  readOnly: true
{{- range $folder, $_ := .Values.rules.existingFolders }}
- name: rules-{{ $folder }}
  mountPath: {{ include "vigil.rules.dir" $ }}/{{ $folder }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding the rule files. */}}
{{- define "vigil.rulesConfigMapName" -}}
{{- if .Values.rules.existingConfigMap }}
{{- .Values.rules.existingConfigMap }}
{{- else }}
{{- include "vigil.componentName" (dict "root" . "component" "rules") }}
{{- end }}
{{- end }}

{{/*
A secret given as {existingSecret, key, value}: is it set? Call with the ref; "true" or "".
*/}}
{{- define "vigil.secret.isSet" -}}
{{- if or .existingSecret .value }}true{{ end }}
{{- end }}

{{/*
Where a secret given as {existingSecret, key, value} lives: {name, key}. Inline values are stored
in the chart's Secret under `chartKey` (fixed per secret, so two secrets never share a key).
Call with (dict "root" $ "ref" .Values.x "chartKey" "smtp-password"); renders a secretKeyRef body.
*/}}
{{- define "vigil.secret.keyRef" -}}
{{- if .ref.existingSecret }}
{{- toYaml (dict "name" .ref.existingSecret "key" .ref.key) }}
{{- else }}
{{- toYaml (dict "name" (include "vigil.secretName" .root) "key" .chartKey) }}
{{- end }}
{{- end }}

{{/*
The secrets given inline in values that enabled components use, as a YAML map of the chart
Secret's key -> value. The chart's Secret holds exactly these; empty: it is not created.
*/}}
{{- define "vigil.secret.inline" -}}
{{- $v := .Values }}
{{- $refs := dict }}
{{- if or $v.worker.enabled $v.executor.enabled }}
{{- $_ := set $refs "action-signing-key" $v.actionSigningKey }}
{{- end }}
{{- if include "vigil.apiToken.used" . }}
{{- $_ := set $refs "api-token" $v.apiToken }}
{{- end }}
{{- if $v.executor.enabled }}
{{- $_ := set $refs "smtp-password" $v.executor.smtpPassword }}
{{- end }}
{{- if $v.bridges.http.enabled }}
{{- $_ := set $refs "github-secret" $v.bridges.http.githubSecret }}
{{- end }}
{{- $inline := dict }}
{{- range $key, $ref := $refs }}
{{- if and $ref.value (not $ref.existingSecret) }}
{{- $_ := set $inline $key $ref.value }}
{{- end }}
{{- end }}
{{- if $inline }}{{ toYaml $inline }}{{ end }}
{{- end }}

{{/*
A secret given as {existingSecret, key, value}, mounted as one read-only file named `chartKey`
(in a volume of that name). Call with (dict "root" $ "ref" .Values.x "chartKey" "api-token").
*/}}
{{- define "vigil.secretFile.volume" -}}
{{- $ref := include "vigil.secret.keyRef" . | fromYaml }}
- name: {{ .chartKey }}
  secret:
    secretName: {{ $ref.name }}
    defaultMode: 0440
    items:
      - key: {{ $ref.key }}
        path: {{ .chartKey }}
{{- end }}

{{/*
Is the API token used: set, and a component that serves or calls Vigil's HTTP API enabled (the
worker, the executor, the HTTP bridge, the UI)? "true" or "".
*/}}
{{- define "vigil.apiToken.used" -}}
{{- $v := .Values }}
{{- if and (include "vigil.secret.isSet" $v.apiToken) (or $v.worker.enabled $v.executor.enabled $v.bridges.http.enabled $v.ui.enabled) }}true{{ end }}
{{- end }}

{{/* Where the API token file is mounted; VIGIL_API_TOKEN_FILE points at <dir>/api-token. */}}
{{- define "vigil.apiToken.dir" -}}
/etc/vigil/secrets/api
{{- end }}

{{/* The API token volume (a file: VIGIL_API_TOKEN_FILE), when a token is set. */}}
{{- define "vigil.apiToken.volume" -}}
{{- if include "vigil.secret.isSet" .Values.apiToken }}
{{- include "vigil.secretFile.volume" (dict "root" . "ref" .Values.apiToken "chartKey" "api-token") }}
{{- end }}
{{- end }}

{{- define "vigil.apiToken.volumeMount" -}}
{{- if include "vigil.secret.isSet" .Values.apiToken }}
- name: api-token
  mountPath: {{ include "vigil.apiToken.dir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The API token's env of one container: VIGIL_API_TOKEN_FILE, and for a server of /metrics
(`metrics`: true) VIGIL_API_METRICS_OPEN when apiToken.metricsOpen. Call with (dict "root" $ "metrics" true).
*/}}
{{- define "vigil.apiToken.env" -}}
{{- if include "vigil.secret.isSet" .root.Values.apiToken }}
- name: VIGIL_API_TOKEN_FILE
  value: {{ include "vigil.apiToken.dir" .root }}/api-token
{{- if and .metrics .root.Values.apiToken.metricsOpen }}
- name: VIGIL_API_METRICS_OPEN
  value: "true"
{{- end }}
{{- end }}
{{- end }}

{{/*
librdkafka settings as JSON (VIGIL_KAFKA_CONFIG): `kafka.config` plus the SASL settings. The SASL
password is a `${env:VIGIL_KAFKA_SASL_PASSWORD}` reference, resolved by Vigil from the env var
the pods take from the Secret. Plain values for secret-looking keys are refused.
*/}}
{{- define "vigil.kafkaConfigJson" -}}
{{- $conf := deepCopy (.Values.kafka.config | default dict) }}
{{- with .Values.kafka.sasl }}
{{- if .enabled }}
{{- if not .password.existingSecret }}
{{- fail "kafka.sasl.enabled: set kafka.sasl.password.existingSecret (the SASL password is read from an existing Secret)" }}
{{- end }}
{{- if not .username }}
{{- fail "kafka.sasl.enabled: set kafka.sasl.username" }}
{{- end }}
{{- $_ := set $conf "security.protocol" .securityProtocol }}
{{- $_ := set $conf "sasl.mechanism" .mechanism }}
{{- $_ := set $conf "sasl.username" .username }}
{{- $_ := set $conf "sasl.password" "${env:VIGIL_KAFKA_SASL_PASSWORD}" }}
{{- end }}
{{- end }}
{{- range $key, $value := $conf }}
{{- if kindIs "map" $value }}
{{- fail (printf "kafka.config.%s: librdkafka settings are scalars; quote dotted keys as one key, e.g. \"%s.x\": value" $key $key) }}
{{- end }}
{{- if kindIs "slice" $value }}
{{- fail (printf "kafka.config.%s: librdkafka settings are scalars, not lists" $key) }}
{{- end }}
{{- if and (regexMatch "(?i)(password|secret|\\.key\\.pem)$" $key) (not (regexMatch "^\\$\\{(env|file):[^}]+\\}$" (toString $value))) }}
{{- fail (printf "kafka.config.%s: give secrets as ${env:NAME} or ${file:/path} (mount the Secret with extraEnv/extraVolumes), never as plain values" $key) }}
{{- end }}
{{- end }}
{{- toJson $conf }}
{{- end }}

{{/* Environment of every Vigil container (after envFrom the shared ConfigMap). */}}
{{- define "vigil.commonEnv" -}}
{{- if .Values.kafka.sasl.enabled }}
- name: VIGIL_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.password.existingSecret }}
      key: {{ .Values.kafka.sasl.password.key }}
{{- end }}
{{- if and .Values.schemaRegistry.url .Values.schemaRegistry.auth.password.existingSecret }}
- name: VIGIL_SCHEMA_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.schemaRegistry.auth.password.existingSecret }}
      key: {{ .Values.schemaRegistry.auth.password.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* envFrom of every Vigil container. */}}
{{- define "vigil.envFrom" -}}
- configMapRef:
    name: {{ include "vigil.envConfigMapName" . }}
{{- end }}

{{/* Pod annotations that roll pods when the shared settings or the chart's Secret change. */}}
{{- define "vigil.checksumAnnotations" -}}
checksum/env: {{ include (print .Template.BasePath "/configmap-env.yaml") . | sha256sum }}
checksum/secrets: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* The writable /tmp every container gets (the root filesystem is read-only). */}}
{{- define "vigil.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "vigil.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The action signing key volume (a file: VIGIL_ACTION_SIGNING_KEY_FILE), when a key is set. */}}
{{- define "vigil.signingKey.volume" -}}
{{- if include "vigil.secret.isSet" .Values.actionSigningKey }}
{{- include "vigil.secretFile.volume" (dict "root" . "ref" .Values.actionSigningKey "chartKey" "action-signing-key") }}
{{- end }}
{{- end }}

{{- define "vigil.signingKey.volumeMount" -}}
{{- if include "vigil.secret.isSet" .Values.actionSigningKey }}
- name: action-signing-key
  mountPath: /etc/vigil/secrets/action-signing-key
  readOnly: true
{{- end }}
{{- end }}

{{- define "vigil.signingKey.env" -}}
{{- if include "vigil.secret.isSet" .Values.actionSigningKey }}
- name: VIGIL_ACTION_SIGNING_KEY_FILE
  value: /etc/vigil/secrets/action-signing-key/action-signing-key
{{- end }}
{{- end }}

{{/* Default anti-affinity: spread a component's pods over nodes. Call with (dict "root" $ "component" "worker"). */}}
{{- define "vigil.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "vigil.selectorLabels" . | nindent 12 }}
{{- end }}

{{/* Chart-wide checks, rendered once (from configmap-env.yaml). */}}
{{- define "vigil.validate" -}}
{{- $key := .Values.actionSigningKey }}
{{- if and $key.value (not $key.existingSecret) (lt (len $key.value) 16) }}
{{- fail "actionSigningKey.value: use at least 16 random bytes (e.g. openssl rand -hex 32)" }}
{{- end }}
{{- $token := .Values.apiToken }}
{{- if and $token.value (not $token.existingSecret) (lt (len (trim $token.value)) 16) }}
{{- fail "apiToken.value: use at least 16 random bytes (e.g. openssl rand -hex 32); Vigil refuses shorter tokens" }}
{{- end }}
{{- if and $token.metricsOpen (not (include "vigil.secret.isSet" $token)) }}
{{- fail "apiToken.metricsOpen is set but apiToken is not: without a token /metrics is open anyway" }}
{{- end }}
{{- with .Values.bridges.syslog }}
{{- if and .enabled .tls.enabled (not .tls.existingSecret) }}
{{- fail "bridges.syslog.tls.enabled: set bridges.syslog.tls.existingSecret (a kubernetes.io/tls Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and .tls.clientCA.existingSecret .tls.clientCA.existingConfigMap }}
{{- fail "bridges.syslog.tls.clientCA: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- if and .enabled .tls.enabled (eq (int .tls.port) (int .port)) }}
{{- fail (printf "bridges.syslog.tls.port: %v is also the UDP/TCP port (bridges.syslog.port); give TLS a port of its own" .tls.port) }}
{{- end }}
{{- end }}
{{- with .Values.ui }}
{{- if and .enabled .persistence.enabled (gt (int .replicas) 1) }}
{{- fail (printf "ui.persistence.enabled: the history store is one SQLite file on a ReadWriteOnce claim; set ui.replicas to 1 (it is %v) or turn persistence off (an emptyDir per pod)" .replicas) }}
{{- end }}
{{- if and .enabled (not .workers) (not $.Values.worker.enabled) }}
{{- fail "ui.enabled without worker.enabled: give the workers' URLs in ui.workers" }}
{{- end }}
{{- if and .enabled (not .workers) $.Values.worker.enabled (lt (int $.Values.worker.replicas) 1) }}
{{- fail "ui.enabled with worker.replicas 0: the UI would have no worker to ask; give ui.workers or at least one worker" }}
{{- end }}
{{- end }}
{{- range $folder, $configMap := .Values.rules.existingFolders }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,56}$" $folder) }}
{{- fail (printf "rules.existingFolders: %q is not a folder name (lower-case letters, digits and -, it names a volume), e.g. gates" $folder) }}
{{- end }}
{{- if not $configMap }}
{{- fail (printf "rules.existingFolders.%s: give the name of the ConfigMap to mount as %s/" $folder $folder) }}
{{- end }}
{{- if not $.Values.rules.existingConfigMap }}
{{- range $file, $_ := $.Values.rules.files }}
{{- if hasPrefix (printf "%s/" $folder) $file }}
{{- fail (printf "rules.files: %q is in folder %s/, which rules.existingFolders mounts from ConfigMap %s; put it there or drop the folder from existingFolders" $file $folder $configMap) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.executor.enabled (include "vigil.secret.isSet" .Values.executor.smtpPassword) (not .Values.executor.config.smtp) }}
{{- fail "executor.smtpPassword is set but executor.config.smtp is not: give the SMTP host there" }}
{{- end }}
{{- with .Values.executor.config.smtp }}
{{- if and .password (not (regexMatch "^\\$\\{(env|file):[^}]+\\}$" (toString .password))) }}
{{- fail "executor.config.smtp.password: never inline; use executor.smtpPassword (existingSecret)" }}
{{- end }}
{{- end }}
{{- if and .Values.executor.config.require_signature (not (include "vigil.secret.isSet" .Values.actionSigningKey)) }}
{{- fail "executor.config.require_signature is true but actionSigningKey is not set" }}
{{- end }}
{{- end }}

{{/*
The settings every Vigil process reads (app/config.py), as YAML of a name -> string map. The shared
ConfigMap holds them for the long-running pods; the hook Jobs carry them inline in their env, since
a pre-upgrade hook runs before the ConfigMap is updated and must still use the new settings.
*/}}
{{- define "vigil.settings" -}}
{{- $settings := dict
  "VIGIL_KAFKA_BOOTSTRAP" (required "kafka.bootstrap is required (HOST:PORT[,HOST:PORT...])" .Values.kafka.bootstrap)
  "VIGIL_KAFKA_CONFIG" (include "vigil.kafkaConfigJson" .)
  "VIGIL_SCHEMA_REGISTRY_URL" (include "vigil.registry.url" .)
  "VIGIL_TOPIC_PREFIX" (.Values.kafka.topicPrefix | toString) }}
{{- if and .Values.schemaRegistry.url .Values.schemaRegistry.auth.username }}
{{- $_ := set $settings "VIGIL_SCHEMA_REGISTRY_USER" .Values.schemaRegistry.auth.username }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* The shared settings as a container's env list (for the hook Jobs; see vigil.settings). */}}
{{- define "vigil.settingsEnv" -}}
{{- range $name, $value := include "vigil.settings" . | fromYaml }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Is the ServiceMonitor kind served by the cluster? Optional CRD kinds are rendered only when the
API server has them (`helm template` needs `--api-versions monitoring.coreos.com/v1/ServiceMonitor`).
*/}}
{{- define "vigil.serviceMonitor.enabled" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end }}
{{- end }}

{{/*
Topology spread of one component: the given constraints, each selecting the component's pods when
it names no selector; or, when none are given, an even spread over zones and nodes that never
blocks scheduling. Call with (dict "root" $ "component" "worker" "constraints" .Values.worker.topologySpreadConstraints).
*/}}
{{- define "vigil.topologySpread" -}}
{{- $selector := dict "matchLabels" (include "vigil.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}{{ $_ := set $c "labelSelector" $selector }}{{ end }}
{{- $constraints = append $constraints $c }}
{{- else }}
{{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
{{- $constraints = append $constraints (dict "maxSkew" 1 "topologyKey" . "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" $selector) }}
{{- end }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}

{{/*
The pod-level fields every Vigil pod shares: service account, pull secrets, security context.
Call with the root context; indent with nindent.
*/}}
{{- define "vigil.podCommon" -}}
serviceAccountName: {{ include "vigil.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
Scheduling fields of one component's pods: nodeSelector, tolerations, affinity (default: spread
over nodes). Call with (dict "root" $ "component" "executor" "values" .Values.executor).
*/}}
{{- define "vigil.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
affinity:
  {{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
  {{- else }}
  {{- include "vigil.spreadAffinity" . | nindent 2 }}
  {{- end }}
{{- end }}
