{{/* Env of the HTTP bridge container: its token and webhook secret (by reference), then the common env. */}}
{{- define "vigil.bridgeHttp.env" -}}
{{- $values := .Values.bridges.http }}
{{- if include "vigil.secret.isSet" $values.apiToken }}
- name: VIGIL_API_TOKEN
  valueFrom:
    secretKeyRef:
      {{- include "vigil.secret.keyRef" (dict "root" . "ref" $values.apiToken "chartKey" "api-token") | trim | nindent 6 }}
{{- end }}
{{- if include "vigil.secret.isSet" $values.githubSecret }}
- name: VIGIL_GITHUB_SECRET_FILE
  value: /etc/vigil/secrets/github/github-secret
{{- end }}
{{- with include "vigil.commonEnv" . | trim }}{{ . | nindent 0 }}{{ end }}
{{- with $values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}
