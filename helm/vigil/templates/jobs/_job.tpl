{{/*
One hook Job (topics or schemas). Helm runs it after the install (post-install: the chart's own
registry exists by then) and before an upgrade (pre-upgrade: new topics and schemas are in place
before new pods roll, and a refused schema fails the upgrade while the old release keeps running).
Its settings are inline (vigil.settingsEnv): before an upgrade the shared ConfigMap still holds the
old ones. Call with (dict "root" $ "component" "schemas" "weight" 1 "args" (list ...) "values" ...
"env" <yaml list> "volumeMounts" <yaml list> "volumes" <yaml list> "podFailurePolicy" <yaml or "">).
*/}}
{{- define "vigil.hookJob" -}}
{{- $root := .root }}
{{- $component := dict "root" $root "component" .component }}
{{- $jobs := $root.Values.jobs }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "vigil.componentName" $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "vigil.labels" $component | nindent 4 }}
  annotations:
    helm.sh/hook: post-install,pre-upgrade
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: {{ $jobs.deletePolicy }}
spec:
  backoffLimit: {{ .values.backoffLimit }}
  activeDeadlineSeconds: {{ .values.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ $jobs.ttlSecondsAfterFinished }}
  {{- with .podFailurePolicy }}
  podFailurePolicy:
    {{- . | nindent 4 }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "vigil.labels" $component | nindent 8 }}
    spec:
      restartPolicy: Never
      {{- include "vigil.podCommon" $root | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "vigil.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "vigil.settingsEnv" $root | nindent 12 }}
            {{- with .env }}{{ . | nindent 12 }}{{ end }}
            {{- with include "vigil.commonEnv" $root | trim }}{{ . | nindent 12 }}{{ end }}
          # `kubectl describe` and the pod status show the end of the output when the step fails
          # (e.g. the registry's reason for refusing a schema).
          terminationMessagePolicy: FallbackToLogsOnError
          resources:
            {{- toYaml $jobs.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "vigil.tmpVolumeMount" $root | nindent 12 }}
            {{- with .volumeMounts }}{{ . | nindent 12 }}{{ end }}
            {{- with $root.Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "vigil.tmpVolume" $root | nindent 8 }}
        {{- with .volumes }}{{ . | nindent 8 }}{{ end }}
        {{- with $root.Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $jobs.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $jobs.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
