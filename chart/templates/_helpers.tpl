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
