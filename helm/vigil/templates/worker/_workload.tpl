{{/*
A worker StatefulSet (`vigil worker`): the workers, and the forwarders (the routes and sinks in
workers of their own). A StatefulSet, so each pod keeps its name and ordinal (<name>-0, <name>-1,
...): the instance id (`--instance-id`: its static membership id, transactional id and state
directory) and its own PersistentVolumeClaim with its state across restarts and rollouts.
Call with (dict "root" $ "component" "worker" "values" <the component's values> "stages" <list>).
*/}}
{{- define "vigil.workerStatefulSet" -}}
{{- $root := .root }}
{{- $values := .values }}
{{- $name := .component }}
{{- $stages := .stages }}
{{- $component := dict "root" $root "component" $name -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "vigil.componentName" (dict "root" $root "component" $name "max" 52) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "vigil.labels" $component | nindent 4 }}
spec:
  serviceName: {{ include "vigil.componentName" $component }}
  replicas: {{ $values.replicas }}
  podManagementPolicy: {{ $values.podManagementPolicy }}
  updateStrategy:
    type: RollingUpdate
  {{- if $values.persistence.enabled }}
  persistentVolumeClaimRetentionPolicy:
    {{- toYaml $values.persistence.retentionPolicy | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "vigil.selectorLabels" $component | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "vigil.labels" $component | nindent 8 }}
      annotations:
        {{- include "vigil.checksumAnnotations" $root | nindent 8 }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "vigil.podCommon" $root | nindent 6 }}
      # Long enough to finish the batch, flush the producer and commit (SIGTERM starts all that).
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ $name }}
          image: {{ include "vigil.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - worker
            - --instance-id
            - $(POD_NAME)
            - --app-id
            - {{ $values.appId | quote }}
            - --guarantee
            - {{ $values.guarantee }}
            - --http
            - 0.0.0.0:{{ $values.httpPort }}
            - --session-timeout-ms
            - {{ $values.sessionTimeoutMs | quote }}
            - --standby-replicas
            - {{ $values.standbyReplicas | quote }}
            - --wait-for-topics
            - {{ $values.waitForTopicsSeconds | quote }}
            {{- if $values.batchScheduling }}
            - --batch-scheduling
            {{- end }}
            {{- range $stages }}
            - --stage
            - {{ . | quote }}
            {{- end }}
            {{- range $values.plugins }}
            - --plugins
            - {{ . | quote }}
            {{- end }}
            {{- with $values.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          envFrom:
            {{- include "vigil.envFrom" $root | nindent 12 }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: VIGIL_STATE_DIR
              value: /var/lib/vigil/state
            - name: VIGIL_RULES_DIR
              value: {{ include "vigil.rules.dir" $root }}
            - name: VIGIL_RULES_MAX_CHAIN_DEPTH
              value: {{ $values.maxChainDepth | quote }}
            {{- with $values.sinks }}
            - name: VIGIL_SINKS
              value: {{ toJson . | quote }}
            {{- end }}
            {{- with include "vigil.signingKey.env" $root | trim }}{{ . | nindent 12 }}{{ end }}
            {{- with include "vigil.apiToken.env" (dict "root" $root "metrics" true) | trim }}{{ . | nindent 12 }}{{ end }}
            {{- with include "vigil.commonEnv" $root | trim }}{{ . | nindent 12 }}{{ end }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $values.httpPort }}
              protocol: TCP
          {{- with $values.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $values.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $values.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: state
              mountPath: /var/lib/vigil/state
            {{- include "vigil.rules.volumeMount" $root | nindent 12 }}
            {{- include "vigil.tmpVolumeMount" $root | nindent 12 }}
            {{- with include "vigil.signingKey.volumeMount" $root | trim }}{{ . | nindent 12 }}{{ end }}
            {{- with include "vigil.apiToken.volumeMount" $root | trim }}{{ . | nindent 12 }}{{ end }}
            {{- with $root.Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        # A ConfigMap volume (no subPath), so edits reach the pod and are hot-reloaded.
        {{- include "vigil.rules.volume" $root | nindent 8 }}
        {{- include "vigil.tmpVolume" $root | nindent 8 }}
        {{- with include "vigil.signingKey.volume" $root | trim }}{{ . | nindent 8 }}{{ end }}
        {{- with include "vigil.apiToken.volume" $root | trim }}{{ . | nindent 8 }}{{ end }}
        {{- if not $values.persistence.enabled }}
        - name: state
          emptyDir: {}
        {{- end }}
        {{- with $root.Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # Workers share the partitions: spread them over zones and nodes, so one failure takes few.
      topologySpreadConstraints:
        {{- include "vigil.topologySpread" (dict "root" $root "component" $name "constraints" $values.topologySpreadConstraints) | nindent 8 }}
  {{- if $values.persistence.enabled }}
  volumeClaimTemplates:
    - metadata:
        name: state
        labels:
          {{- include "vigil.selectorLabels" $component | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $values.persistence.accessModes | nindent 10 }}
        {{- with $values.persistence.storageClass }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $values.persistence.size | quote }}
  {{- end }}
{{- end }}

{{/*
The headless Service of a worker StatefulSet: stable pod DNS names, and the /metrics (and query
API) endpoints of every pod, ready or not (a restoring worker still has metrics worth seeing).
Call with (dict "root" $ "component" "worker" "values" <the component's values>).
*/}}
{{- define "vigil.workerService" -}}
{{- $component := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "vigil.componentName" $component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vigil.labels" $component | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "vigil.selectorLabels" $component | nindent 4 }}
  ports:
    - name: http
      port: {{ .values.httpPort }}
      targetPort: http
      protocol: TCP
{{- end }}

{{/*
The PodDisruptionBudget of a worker StatefulSet: drains take its pods a few at a time, each
departure moving its partitions to the others. Call like vigil.workerService.
*/}}
{{- define "vigil.workerPdb" -}}
{{- $component := dict "root" .root "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "vigil.componentName" $component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vigil.labels" $component | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "vigil.selectorLabels" $component | nindent 6 }}
{{- end }}

{{/*
The worker's built-in stages (`--stage`): worker.stages; when empty, all of them, except the
routes and sinks when forwarders run those. A list, as YAML.
*/}}
{{- define "vigil.worker.stages" -}}
{{- $stages := .Values.worker.stages }}
{{- if and (not $stages) .Values.forwarder.enabled }}
{{- $stages = list "pipeline" "rules" "members" }}
{{- end }}
{{- if .Values.forwarder.enabled }}
{{- range .Values.forwarder.stages }}
{{- if has . $stages }}
{{- fail (printf "worker.stages and forwarder.stages both run the %s stage: each event would be handled twice; run it in one of them" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $stages }}
{{- end }}

{{/*
`over` laid over `base` (two dicts), nested dicts key by key: every key `over` has wins, false, 0
and empty lists too (sprig's merge and mergeOverwrite skip those, so `forwarder.podDisruptionBudget.
enabled: false` would take the worker's true). A dict, as YAML.
*/}}
{{- define "vigil.overlay" -}}
{{- $out := deepCopy .base }}
{{- range $key, $value := .over }}
{{- if and (kindIs "map" $value) (kindIs "map" (get $out $key)) }}
{{- $_ := set $out $key (include "vigil.overlay" (dict "base" (get $out $key) "over" $value) | fromYaml) }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The forwarders' values: forwarder's own keys over the worker's (one place for the settings both
share: sinks, resources, probes, persistence, extraEnv...); its plugins and standbyReplicas are its
own keys (values.yaml), so the workers' are never inherited. A dict, as YAML.
*/}}
{{- define "vigil.forwarder.values" -}}
{{- if not .Values.forwarder.stages }}
{{- fail "forwarder.stages is empty: that would run every stage (the pipeline too) a second time; e.g. [routes, sinks]" }}
{{- end }}
{{- include "vigil.overlay" (dict "base" .Values.worker "over" .Values.forwarder) }}
{{- end }}
