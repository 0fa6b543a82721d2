{{- /*
  Refusals at render time for values the hub could not run with, naming the key to fix. The hub
  wiring itself is the chart's (wiring.yaml), so there is nothing of it for an operator to break.
*/}}
{{- define "datalake-hub.checks" -}}
{{- $z := .Values.jupyterhub | default dict }}
{{- if and (dig "rbac" "create" true $z) (not (dig "hub" "serviceAccount" "create" true $z)) (not (dig "hub" "serviceAccount" "name" "" $z)) }}
{{- fail "jupyterhub.hub.serviceAccount.create is false and no name is set: the hub would run as the namespace's `default` ServiceAccount, which the chart will not grant Secret access; set jupyterhub.hub.serviceAccount.name" }}
{{- end }}
{{- end }}
