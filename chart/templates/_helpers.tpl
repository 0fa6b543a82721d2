{{- /*
  Names. Every z2jh object we refer to (the hub's ServiceAccount, the hub and proxy-public Services)
  is named by z2jh's own helpers, so `jupyterhub.fullnameOverride` / `nameOverride` work in every
  combination z2jh supports. Our own objects carry the same prefix as z2jh's (none by default, the
  release name with `fullnameOverride: null`), so two releases in one namespace do not collide.
*/}}
{{- define "datalake-hub.z2jh" -}}
{{- /* (list "<z2jh name template without the jupyterhub. prefix>" $) -> z2jh's name for it */}}
{{- $what := index . 0 }}
{{- $root := index . 1 }}
{{- if $root.Chart.Dependencies }}
{{- /* z2jh's helpers read .Values as the subchart's and .Chart.Name as "jupyterhub" */}}
{{- include (printf "jupyterhub.%s" $what) (dict "Values" $root.Values.jupyterhub "Release" $root.Release "Chart" (dict "Name" "jupyterhub")) }}
{{- else }}
{{- /* rendered without the subchart (the chart tests that CI can always run): z2jh's defaults */}}
{{- get (dict "fullname.dash" "" "hub.fullname" "hub" "hub-serviceaccount.fullname" "hub" "proxy-public.fullname" "proxy-public") $what }}
{{- end }}
{{- end }}

{{- define "datalake-hub.prefix" -}}{{ include "datalake-hub.z2jh" (list "fullname.dash" .) }}{{- end }}
{{- define "datalake-hub.settings.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-settings{{- end }}
{{- define "datalake-hub.profiles.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-profiles{{- end }}
{{- define "datalake-hub.package.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-package{{- end }}
{{- define "datalake-hub.hub-secrets.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-user-secrets{{- end }}
{{- define "datalake-hub.test.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-test-hub-api{{- end }}
{{- define "datalake-hub.z2jh.hub" -}}{{ include "datalake-hub.z2jh" (list "hub.fullname" .) }}{{- end }}
{{- define "datalake-hub.z2jh.proxy-public" -}}{{ include "datalake-hub.z2jh" (list "proxy-public.fullname" .) }}{{- end }}
{{- define "datalake-hub.z2jh.hub-serviceaccount" -}}{{ include "datalake-hub.z2jh" (list "hub-serviceaccount.fullname" .) }}{{- end }}

{{- /* The profiles ConfigMap the hub mounts: the operator's, or ours. */}}
{{- define "datalake-hub.profiles.configMapName" -}}
{{- .Values.profileFiles.existingConfigMap | default (include "datalake-hub.profiles.fullname" .) }}
{{- end }}

{{- /* The PersistentVolume of static NFS homes: cluster-scoped, so namespaced by name. */}}
{{- define "datalake-hub.home-pv.fullname" -}}
{{- $home := include "datalake-hub.home" . | fromYaml }}
{{- printf "%s-%s" .Release.Namespace $home.claim_name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* Home storage settings with the model's defaults (the settings file only holds what is set). */}}
{{- define "datalake-hub.home" -}}
{{- $storage := get .Values.datalake "storage" | default dict }}
{{- $home := deepCopy (get $storage "home" | default dict) }}
{{- $_ := set $home "type" (get $home "type" | default "dynamic") }}
{{- $_ := set $home "claim_name" (get $home "claim_name" | default "datalake-home") }}
{{- toYaml $home }}
{{- end }}

{{- define "datalake-hub.labels" -}}
app.kubernetes.io/name: datalake-hub
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end }}

{{- /*
  Dask Gateway (the optional dask-gateway subchart). `.Subcharts` holds a dependency only when it is
  in charts/ and its condition (`dask-gateway.enabled`) is true, so "dask-gateway.sub" is the
  subchart's own context or empty, and its names come from its own helpers.
*/}}
{{- define "datalake-hub.dask-gateway.on" -}}{{ if index (.Subcharts | default dict) "dask-gateway" }}true{{ end }}{{- end }}
{{- define "datalake-hub.dask-gateway.token.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-dask-gateway-token{{- end }}
{{- /* The forwardAuth Middleware of the Dask dashboards (dask-gateway/dashboard-auth.yaml; hub_config/dask/dashboard_auth.py) */}}
{{- define "datalake-hub.dask-gateway.dashboard-auth.name" -}}{{ include "datalake-hub.dask-gateway.name" (list "fullname" .) | printf "dashboard-auth-%s" | trunc 63 | trimSuffix "-" }}{{- end }}
{{- define "datalake-hub.dask-gateway.role.fullname" -}}{{ include "datalake-hub.prefix" . }}datalake-hub-dask-gateway{{- end }}

{{- /* The Secret holding the gateway's hub API token: the operator's (secrets.daskGatewayApiToken.name), or the one the chart generates. */}}
{{- define "datalake-hub.dask-gateway.token.secretName" -}}
{{- .Values.secrets.daskGatewayApiToken.name | default (include "datalake-hub.dask-gateway.token.fullname" .) }}
{{- end }}
{{- define "datalake-hub.dask-gateway.token.key" -}}{{ .Values.secrets.daskGatewayApiToken.key | default "api-token" }}{{- end }}

{{- /* (list "<dask-gateway helper name>" $) -> the subchart's name for it, e.g. apiName, traefikName */}}
{{- define "datalake-hub.dask-gateway.name" -}}
{{- $root := index . 1 }}
{{- include (printf "dask-gateway.%s" (index . 0)) (index $root.Subcharts "dask-gateway") }}
{{- end }}

{{- /* Where notebooks reach the gateway through its Traefik: {address, proxy_address}, from the subchart's values. */}}
{{- define "datalake-hub.dask-gateway.addresses" -}}
{{- $sub := index .Subcharts "dask-gateway" }}
{{- $host := printf "%s.%s" (include "datalake-hub.dask-gateway.name" (list "traefikName" .)) .Release.Namespace }}
{{- $ports := $sub.Values.traefik.service.ports }}
{{- $prefix := trimSuffix "/" ($sub.Values.gateway.prefix | default "/") }}
{{- $tcp := $ports.tcp.port }}
{{- /* `tcp.port: web` shares the web port; the client only reads host:port of proxy_address */}}
{{- if eq (toString $tcp) "web" }}{{ $tcp = $ports.web.port }}{{ end }}
{{- toYaml (dict "address" (printf "http://%s:%v%s" $host $ports.web.port $prefix) "proxy_address" (printf "tls://%s:%v" $host $tcp)) }}
{{- end }}
