{{/* Env of the HTTP bridge container: its token and webhook secret (files), then the common env. */}}
{{- define "vigil.bridgeHttp.env" -}}
{{- $values := .Values.bridges.http }}
{{- include "vigil.apiToken.env" (dict "root" . "metrics" true) }}
{{- if include "vigil.secret.isSet" $values.githubSecret }}
- name: VIGIL_GITHUB_SECRET_FILE
  value: /etc/vigil/secrets/github/github-secret
{{- end }}
{{- with include "vigil.commonEnv" . | trim }}{{ . | nindent 0 }}{{ end }}
{{- with $values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}
