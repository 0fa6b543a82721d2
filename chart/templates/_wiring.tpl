{{- /*
  The hub's wiring: the volumes and mounts that bring our package, settings, profiles and IAM
  client secret into the stock z2jh hub, derived from our values only (one home: paths follow the
  `datalake:` settings the hub reads). Rendered as YAML {volumes: [...], volumeMounts: [...]} for
  the wiring template, which appends it to the operator's own `jupyterhub.hub.extraVolumes`.
*/}}
{{- define "datalake-hub.hub-wiring" -}}
{{- $dl := .Values.datalake | default dict }}
{{- $volumes := list }}
{{- $mounts := list }}

{{- /* hub_config, one ConfigMap key per file (keys cannot hold `/`): `items` rebuild the tree */}}
{{- $items := list }}
{{- range $path, $_ := .Files.Glob "files/hub_config/**" }}
{{- $rel := trimPrefix "files/hub_config/" $path }}
{{- $items = append $items (dict "key" (replace "/" "--" $rel) "path" $rel) }}
{{- end }}
{{- $volumes = append $volumes (dict "name" "datalake-package" "configMap" (dict "name" (include "datalake-hub.package.fullname" .) "items" $items)) }}
{{- /* z2jh's jupyterhub_config.py puts /usr/local/etc/jupyterhub on sys.path: `import hub_config` */}}
{{- $mounts = append $mounts (dict "name" "datalake-package" "mountPath" "/usr/local/etc/jupyterhub/hub_config" "readOnly" true) }}

{{- /* settings: a directory mount (never subPath), so the kubelet's updates reach the hub's watcher */}}
{{- $volumes = append $volumes (dict "name" "datalake-settings" "configMap" (dict "name" (include "datalake-hub.settings.fullname" .))) }}
{{- $mounts = append $mounts (dict "name" "datalake-settings" "mountPath" "/etc/datalake/settings" "readOnly" true) }}

{{- /* profiles: a directory mount at datalake.profiles.directory (hot-reloaded); null: inline only */}}
{{- $profilesDir := "/etc/datalake/profiles" }}
{{- if hasKey (get $dl "profiles" | default dict) "directory" }}{{ $profilesDir = $dl.profiles.directory }}{{ end }}
{{- if $profilesDir }}
{{- $volumes = append $volumes (dict "name" "datalake-profiles" "configMap" (dict "name" (include "datalake-hub.profiles.configMapName" .))) }}
{{- $mounts = append $mounts (dict "name" "datalake-profiles" "mountPath" (trimSuffix "/" $profilesDir) "readOnly" true) }}
{{- end }}

{{- /* the IAM client secret, at datalake.iam.client_secret.file, from secrets.iamClientSecret */}}
{{- $secret := .Values.secrets.iamClientSecret | default dict }}
{{- $file := dig "iam" "client_secret" "file" "/etc/datalake/secrets/iam-client-secret" $dl }}
{{- if and $secret.name $file (not (dig "iam" "client_secret" "env" "" $dl)) }}
{{- $item := dict "key" ($secret.key | default "client-secret") "path" (base $file) }}
{{- /* 0440: readable by the hub's fsGroup only */}}
{{- $volumes = append $volumes (dict "name" "datalake-iam-client-secret" "secret" (dict "secretName" $secret.name "defaultMode" 288 "items" (list $item))) }}
{{- $mounts = append $mounts (dict "name" "datalake-iam-client-secret" "mountPath" (dir $file) "readOnly" true) }}
{{- end }}

{{- /* Dask Gateway's hub API token, at datalake.dask_gateway.api_token_file, from secrets.daskGatewayApiToken
       (or the Secret the chart generates with the dask-gateway subchart) */}}
{{- $gw := get $dl "dask_gateway" | default dict }}
{{- if and (get $gw "enabled") (or .Values.secrets.daskGatewayApiToken.name (include "datalake-hub.dask-gateway.on" .)) }}
{{- $gwFile := get $gw "api_token_file" | default "/etc/datalake/dask-gateway/api-token" }}
{{- $gwItem := dict "key" (include "datalake-hub.dask-gateway.token.key" .) "path" (base $gwFile) }}
{{- $volumes = append $volumes (dict "name" "datalake-dask-gateway-token" "secret" (dict "secretName" (include "datalake-hub.dask-gateway.token.secretName" .) "defaultMode" 288 "items" (list $gwItem))) }}
{{- $mounts = append $mounts (dict "name" "datalake-dask-gateway-token" "mountPath" (dir $gwFile) "readOnly" true) }}
{{- end }}
{{- toYaml (dict "volumes" $volumes "volumeMounts" $mounts) }}
{{- end }}

{{- /* The hub's one line of configuration: the package does the rest (no Python in YAML). */}}
{{- define "datalake-hub.extra-config" -}}from hub_config.apply import apply_from_file; apply_from_file(c){{- end }}
