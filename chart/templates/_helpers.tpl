{{- /*
  Names. z2jh 4.4.0 copies hub.extraVolumes into the hub Deployment without `tpl`, so the objects the
  hub mounts have fixed names (like z2jh's own `hub`, `proxy-public`): one release per namespace.
*/}}
{{- define "datalake-hub.settings.fullname" -}}datalake-hub-settings{{- end }}
{{- define "datalake-hub.profiles.fullname" -}}datalake-hub-profiles{{- end }}
{{- define "datalake-hub.package.fullname" -}}datalake-hub-package{{- end }}
{{- define "datalake-hub.hub-secrets.fullname" -}}datalake-hub-user-secrets{{- end }}
{{- define "datalake-hub.test.fullname" -}}datalake-hub-test-hub-api{{- end }}

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

{{- /*
  z2jh's names, computed as z2jh does (jupyterhub.fullname / hub.fullname / hub-serviceaccount.fullname)
  so our templates render without the subchart too.
*/}}
{{- define "datalake-hub.z2jh.fullname" -}}
{{- $z := .Values.jupyterhub | default dict }}
{{- if eq (typeOf (get $z "fullnameOverride")) "string" }}
{{- get $z "fullnameOverride" }}
{{- else }}
{{- $name := get $z "nameOverride" | default "jupyterhub" }}
{{- if contains $name .Release.Name }}{{ .Release.Name }}{{ else }}{{ .Release.Name }}-{{ $name }}{{ end }}
{{- end }}
{{- end }}

{{- define "datalake-hub.z2jh.prefix" -}}
{{- with include "datalake-hub.z2jh.fullname" . }}{{ . }}-{{ end }}
{{- end }}

{{- define "datalake-hub.z2jh.hub" -}}
{{- include "datalake-hub.z2jh.prefix" . }}hub
{{- end }}

{{- define "datalake-hub.z2jh.proxy-public" -}}
{{- include "datalake-hub.z2jh.prefix" . }}proxy-public
{{- end }}

{{- define "datalake-hub.z2jh.hub-serviceaccount" -}}
{{- $sa := dig "hub" "serviceAccount" dict (.Values.jupyterhub | default dict) }}
{{- $create := true }}
{{- if hasKey $sa "create" }}{{ $create = $sa.create }}{{ end }}
{{- if $create }}
{{- get $sa "name" | default (include "datalake-hub.z2jh.hub" .) }}
{{- else }}
{{- get $sa "name" | default "default" }}
{{- end }}
{{- end }}

{{- define "datalake-hub.labels" -}}
app.kubernetes.io/name: datalake-hub
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end }}

{{- /* sha256 of the settings file: the hub reads it only at start. */}}
{{- define "datalake-hub.settings.checksum" -}}
{{- toYaml .Values.datalake | sha256sum }}
{{- end }}
