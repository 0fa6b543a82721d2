{{- /*
  Refusals at render time for values the hub could not run with, naming the key to fix. The hub
  wiring itself is the chart's (wiring.yaml), so there is nothing of it for an operator to break.
*/}}
{{- define "datalake-hub.checks" -}}
{{- $z := .Values.jupyterhub | default dict }}
{{- if and (dig "rbac" "create" true $z) (not (dig "hub" "serviceAccount" "create" true $z)) (not (dig "hub" "serviceAccount" "name" "" $z)) }}
{{- fail "jupyterhub.hub.serviceAccount.create is false and no name is set: the hub would run as the namespace's `default` ServiceAccount, which the chart will not grant Secret access; set jupyterhub.hub.serviceAccount.name" }}
{{- end }}
{{- $dask := dig "dask_gateway" "enabled" false (.Values.datalake | default dict) }}
{{- $sub := dig "enabled" false (index .Values "dask-gateway" | default dict) }}
{{- if and $sub (not $dask) }}
{{- fail "dask-gateway.enabled is true but datalake.dask_gateway.enabled is not: the hub would not know the gateway, which would refuse every user (enable both)" }}
{{- end }}
{{- if and $dask (not $sub) (not (dig "daskGatewayApiToken" "name" "" (.Values.secrets | default dict))) }}
{{- fail "datalake.dask_gateway.enabled is true but secrets.daskGatewayApiToken.name is not set: the hub would not know the gateway's token (name the Secret holding it, or set dask-gateway.enabled to install the gateway with a generated one)" }}
{{- end }}
{{- if and $dask (not $sub) (not (and (dig "dask_gateway" "address" "" .Values.datalake) (dig "dask_gateway" "proxy_address" "" .Values.datalake))) }}
{{- fail "datalake.dask_gateway.enabled is true without dask-gateway.enabled: set datalake.dask_gateway.address and proxy_address (where notebooks reach your gateway)" }}
{{- end }}
{{- end }}
